// Command keyalert is the Fluent Bit output plugin, built with
// -buildmode=c-shared into keyalert.so. This package is only the cgo edge:
// it translates Fluent Bit's C arguments and calls package instance, where
// configuration, flushing, delivery and panic recovery live.
package main

/*
#include <stdlib.h>
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/fluent/fluent-bit-go/output"
	"github.com/keyalert/keyalert/plugin/instance"
)

// The return codes package instance uses must be Fluent Bit's.
var _ = [1]struct{}{}[instance.FLBError-output.FLB_ERROR]
var _ = [1]struct{}{}[instance.FLBOK-output.FLB_OK]
var _ = [1]struct{}{}[instance.FLBRetry-output.FLB_RETRY]

var registry = instance.NewRegistry(instance.DefaultLogger())

// recoverTo logs a panic in the cgo glue itself and sets *code.
func recoverTo(where string, code *int, fallback int) {
	if p := recover(); p != nil {
		instance.DefaultLogger().Error("panic in "+where, "panic", fmt.Sprint(p))
		*code = fallback
	}
}

//export FLBPluginRegister
func FLBPluginRegister(def unsafe.Pointer) (code int) {
	defer recoverTo("FLBPluginRegister", &code, output.FLB_ERROR)
	return output.FLBPluginRegister(def, "keyalert", "Count keywords in log records into a Redis stream for alerting")
}

//export FLBPluginInit
func FLBPluginInit(plugin unsafe.Pointer) (code int) {
	defer recoverTo("FLBPluginInit", &code, output.FLB_ERROR)
	id, code := registry.Init(func(key string) string { return output.FLBPluginConfigKey(plugin, key) })
	if code != output.FLB_OK {
		return code
	}
	// The context is the registry id, so no Go pointer is kept on the C side.
	output.FLBPluginSetContext(plugin, id)
	return output.FLB_OK
}

//export FLBPluginFlushCtx
func FLBPluginFlushCtx(ctx, data unsafe.Pointer, length C.int, tag *C.char) (code int) {
	defer recoverTo("FLBPluginFlushCtx", &code, output.FLB_RETRY)
	id, _ := output.FLBPluginGetContext(ctx).(uint64)
	return registry.Flush(id, chunkBytes(data, length), C.GoString(tag))
}

//export FLBPluginFlush
func FLBPluginFlush(data unsafe.Pointer, length C.int, tag *C.char) (code int) {
	defer recoverTo("FLBPluginFlush", &code, output.FLB_RETRY)
	return registry.FlushAny(chunkBytes(data, length), C.GoString(tag))
}

//export FLBPluginExitCtx
func FLBPluginExitCtx(ctx unsafe.Pointer) (code int) {
	defer recoverTo("FLBPluginExitCtx", &code, output.FLB_ERROR)
	id, _ := output.FLBPluginGetContext(ctx).(uint64)
	return registry.Exit(id)
}

//export FLBPluginExit
func FLBPluginExit() (code int) {
	defer recoverTo("FLBPluginExit", &code, output.FLB_ERROR)
	return registry.ExitAll()
}

//export FLBPluginUnregister
func FLBPluginUnregister(def unsafe.Pointer) {
	defer func() {
		if p := recover(); p != nil {
			instance.DefaultLogger().Error("panic in FLBPluginUnregister", "panic", fmt.Sprint(p))
		}
	}()
	output.FLBPluginUnregister(def)
}

// KeyalertGoroutines reports the number of goroutines, so a test host can
// check that exit followed by init (hot reload) leaves none behind.
//
//export KeyalertGoroutines
func KeyalertGoroutines() C.int {
	return C.int(runtime.NumGoroutine())
}

// chunkBytes views the chunk in place; it is valid only during the flush call.
func chunkBytes(data unsafe.Pointer, length C.int) []byte {
	if data == nil || length <= 0 {
		return nil
	}
	return unsafe.Slice((*byte)(data), int(length))
}

func main() {}

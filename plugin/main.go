// Command keyalert is the Fluent Bit output plugin, built with
// -buildmode=c-shared into keyalert.so. This package is only the cgo edge:
// it translates Fluent Bit's C arguments and calls package instance, where
// configuration, flushing, delivery and panic recovery live.
package main

/*
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

// Fluent Bit v5.1.1's struct flb_config_map (include/fluent-bit/flb_config_map.h):
// the host walks the array the plugin registers with this stride, so the
// layout must be exactly that version's. Only the public fields are set.
struct ka_config_map {
	int type;
	char *name;
	char *def_value;
	int flags;
	int set_property;
	uintptr_t offset;
	char *desc;
	void *value_val;
	char *value_raw;
	void *value_mult;
	void *value_head[2];
	void *head[2];
};

// The proxy definition as v5.1.1 declares it; older versions end before
// config_map (v5.1.0 and v5.0 after event_type, older ones before it).
struct ka_proxy_def {
	int type;
	int proxy;
	int flags;
	char *name;
	char *description;
	int event_type;
	struct ka_config_map *config_map;
};

// ka_set_config_map stores map in def->config_map only when the host's
// allocation of def reaches that field: Fluent Bit always allocates def on
// its heap (flb_calloc, flb_malloc before v5.0), sized for its own struct, so
// an older host's block ends before it and is left alone. A host whose
// allocator rounds up (jemalloc) may get the pointer in slack it never reads:
// within its block, so harmless. Returns 1 when stored.
static int ka_set_config_map(void *def, struct ka_config_map *map) {
	size_t need = offsetof(struct ka_proxy_def, config_map) + sizeof(void *);
	if (def == NULL || malloc_usable_size(def) < need) {
		return 0;
	}
	((struct ka_proxy_def *)def)->config_map = map;
	return 1;
}
*/
import "C"

import (
	"fmt"
	"runtime"
	"unsafe"

	"github.com/fluent/fluent-bit-go/output"
	"github.com/keyalert/keyalert/plugin/config"
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
	code = output.FLBPluginRegister(def, "keyalert", "Count keywords in log records into a Redis stream for alerting")
	if code == 0 {
		C.ka_set_config_map(def, configMap())
	}
	return code
}

// FLB_CONFIG_MAP_STR: every key is handed over as text; Parse reads it.
const configMapStr = 0

var cmap *C.struct_ka_config_map

// configMap builds, once, the config map Fluent Bit v5.1.1+ validates the
// instance's keys against (an unknown key stops Fluent Bit, naming it) and
// prints for `fluent-bit -o keyalert -h`. It lives in C memory for the life
// of the process, as Fluent Bit keeps the pointer. set_property stays 0: the
// plugin reads its keys itself, core writes nothing into it.
func configMap() *C.struct_ka_config_map {
	if cmap != nil {
		return cmap
	}
	keys := config.ConfigMap()
	n := C.size_t(len(keys) + 1) // zeroed terminator
	m := (*C.struct_ka_config_map)(C.calloc(n, C.size_t(unsafe.Sizeof(C.struct_ka_config_map{}))))
	entries := unsafe.Slice(m, len(keys)+1)
	for i, k := range keys {
		entries[i]._type = configMapStr
		entries[i].name = C.CString(k.Name)
		if k.Default != "" {
			entries[i].def_value = C.CString(k.Default)
		}
		entries[i].desc = C.CString(k.Description)
	}
	cmap = m
	return m
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

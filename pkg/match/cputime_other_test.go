//go:build !linux

package match

import "time"

func threadCPU() (time.Duration, bool) { return 0, false }

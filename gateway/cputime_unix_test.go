//go:build unix

package gateway

import (
	"syscall"
	"time"
)

// processCPU is the CPU time the process has used so far (user and
// system, every thread): benchmarks report it per operation, which, unlike
// wall time, does not grow when other programs compete for the CPU.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

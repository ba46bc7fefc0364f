//go:build unix

package ingest

import "syscall"

// cpuSeconds is the user+system CPU time this process has used. On a
// machine shared with other work, events per CPU-second is a steadier
// figure than events per wall-clock second.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fedgate/fedgate/internal/procstat"
)

// procCPU returns the CPU time (user + system) used so far by pid and all
// its descendants that are still running (nginx's workers, for one).
func procCPU(pid int) (time.Duration, error) {
	var total time.Duration
	for _, p := range append([]int{pid}, descendants(pid)...) {
		d, err := procstat.CPU(p)
		if err != nil {
			if p == pid {
				return 0, err
			}
			continue // a child that just exited
		}
		total += d
	}
	return total, nil
}

// descendants lists the running descendants of pid.
func descendants(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(s); err == nil {
				out = append(out, c)
				out = append(out, descendants(c)...)
			}
		}
	}
	return out
}

// procMem reports the resident set size of pid and its descendants, its
// own thread count and open descriptors.
type procMem struct {
	RSS     int64 // bytes
	Threads int
	FDs     int
}

func readProcMem(pid int) (procMem, error) {
	var m procMem
	for _, p := range append([]int{pid}, descendants(pid)...) {
		f, err := os.Open(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			if p == pid {
				return m, fmt.Errorf("reading memory: %w", err)
			}
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), ":")
			fields := strings.Fields(v)
			if len(fields) == 0 {
				continue
			}
			n, _ := strconv.ParseInt(fields[0], 10, 64)
			switch k {
			case "VmRSS":
				m.RSS += n << 10
			case "Threads":
				if p == pid {
					m.Threads = int(n)
				}
			}
		}
		f.Close()
	}
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		m.FDs = len(fds)
	}
	return m, nil
}

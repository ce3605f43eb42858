package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"
)

// ClockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ,
// 100 on every Linux architecture Go supports).
const ClockTick = 10 * time.Millisecond

// errFormat is returned for a stat line that is not what Linux writes.
var errFormat = errors.New("unexpected format")

// CPU returns the CPU time (user + system) that pid has used so far, not
// counting its children.
func CPU(pid int) (time.Duration, error) {
	path := fmt.Sprintf("/proc/%d/stat", pid)
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading CPU time: %w", err)
	}
	d, err := parseStat(b)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// parseStat reads utime and stime, the 14th and 15th fields, from a
// /proc/<pid>/stat line. The command name (field 2) may hold spaces and
// parentheses, so the fields are counted from its last ')'.
func parseStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errFormat
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 13 {
		return 0, errFormat
	}
	// f[0] is field 3 (state); utime and stime are f[11] and f[12].
	user, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	sys, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil || user < 0 || sys < 0 {
		return 0, errFormat
	}
	return time.Duration(user+sys) * ClockTick, nil
}

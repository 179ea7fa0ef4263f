package measure

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// procUsage is a process's cumulative CPU time and current memory.
type procUsage struct {
	// CPU is user + system time in seconds since the process started.
	CPU float64
	// RSS is the resident set size (VmRSS) in bytes.
	RSS int64
}

// readProc reads pid's CPU time from /proc/<pid>/stat (utime + stime) and
// its resident memory from /proc/<pid>/status (VmRSS).
func readProc(pid int) (procUsage, error) {
	var u procUsage
	cpu, err := readProcCPU(pid)
	if err != nil {
		return u, err
	}
	u.CPU = cpu
	status, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return u, err
	}
	defer status.Close()
	sc := bufio.NewScanner(status)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				if err != nil {
					return u, fmt.Errorf("/proc/%d/status: VmRSS %q", pid, v)
				}
				u.RSS = kb << 10
			}
			break
		}
	}
	return u, sc.Err()
}

// readProcCPU reads pid's CPU seconds from /proc/<pid>/stat (utime +
// stime, over all its threads).
func readProcCPU(pid int) (float64, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// count fields after the last ')'. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	utime, err1 := strconv.ParseUint(fields[11], 10, 64)
	stime, err2 := strconv.ParseUint(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, fields[11], fields[12])
	}
	return float64(utime+stime) / clockTicks, nil
}

package measure

import (
	"bufio"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// Machine describes the host a run measured, for the report.
type Machine struct {
	CPUModel  string  `json:"cpuModel"`
	Cores     int     `json:"cores"`
	MemoryGiB float64 `json:"memoryGiB"`
	Kernel    string  `json:"kernel"`
	GoVersion string  `json:"goVersion"`
	OS        string  `json:"os"`
}

func DescribeMachine() Machine {
	m := Machine{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	m.MemoryGiB = float64(MemInfo("MemTotal")) / (1 << 30)
	return m
}

// MemInfo returns a /proc/meminfo field in bytes (0 if unknown).
func MemInfo(field string) int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || k != field {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			return 0
		}
		kb, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil {
			return 0
		}
		return kb << 10
	}
	return 0
}

// LoadAverage returns the 1, 5 and 15 minute load averages of
// /proc/loadavg (zeros if unreadable): the machine is shared, and timing
// figures are read next to it.
func LoadAverage() [3]float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return [3]float64{}
	}
	return parseLoadAverage(string(b))
}

func parseLoadAverage(s string) [3]float64 {
	var l [3]float64
	fs := strings.Fields(s)
	for i := range min(3, len(fs)) {
		v, err := strconv.ParseFloat(fs[i], 64)
		if err != nil {
			return [3]float64{}
		}
		l[i] = v
	}
	return l
}

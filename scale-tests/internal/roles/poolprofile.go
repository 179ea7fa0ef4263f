package roles

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"
)

// Environment variables of the node pools' CPU profiles, for finding where
// the nodes' CPU goes (go tool pprof FILE):
//
//	MESHRELAY_POOL_CPUPROFILE=DIR           write DIR/<pool>-sync.pprof (pool start → scenario
//	                                        start) and DIR/<pool>-scenario.pprof (scenario start
//	                                        → scenario start + the seconds below, or the pool's end),
//	                                        and the allocations at each one's start and end,
//	                                        DIR/<pool>-<phase>-allocs{0,1}.pprof (what a phase
//	                                        allocated: go tool pprof -sample_index=alloc_space
//	                                        -base ...-allocs0.pprof ...-allocs1.pprof)
//	MESHRELAY_POOL_CPUPROFILE_SECONDS=60    longest length of each profile (default 60)
//	MESHRELAY_POOL_CPUPROFILE_HZ=1000       samples per second (default 100, Go's: too few for
//	                                        the short fan-outs of one change)
//
// The launcher passes the harness's environment on to every role.
const (
	envPoolProfile        = "MESHRELAY_POOL_CPUPROFILE"
	envPoolProfileSeconds = "MESHRELAY_POOL_CPUPROFILE_SECONDS"
	envPoolProfileHz      = "MESHRELAY_POOL_CPUPROFILE_HZ"
)

// poolProfile writes a node pool's CPU profiles when envPoolProfile is set;
// its zero value (and a nil one) does nothing.
type poolProfile struct {
	dir, name string
	scenario  time.Duration
	hz        int // sampling rate; 0: Go's default
	log       *slog.Logger

	mu      sync.Mutex
	f       *os.File // the profile being written; nil when none
	phase   string   // f's phase
	started bool     // the scenario profile was started
}

// startPoolProfile starts the sync profile of pool name when the
// environment asks for profiles; it returns nil otherwise.
func startPoolProfile(name string, log *slog.Logger) (*poolProfile, error) {
	dir := os.Getenv(envPoolProfile)
	if dir == "" {
		return nil, nil
	}
	secs := 60.0
	if v := os.Getenv(envPoolProfileSeconds); v != "" {
		s, err := strconv.ParseFloat(v, 64)
		if err != nil || s <= 0 {
			return nil, fmt.Errorf("%s=%q: want a positive number of seconds", envPoolProfileSeconds, v)
		}
		secs = s
	}
	hz := 0
	if v := os.Getenv(envPoolProfileHz); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 10000 {
			return nil, fmt.Errorf("%s=%q: want samples per second in 1..10000", envPoolProfileHz, v)
		}
		hz = n
	}
	pp := &poolProfile{dir: dir, name: name, scenario: time.Duration(secs * float64(time.Second)), hz: hz, log: log}
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if err := pp.startLocked("sync"); err != nil {
		return nil, err
	}
	// The same length bounds the sync profile, so that it is written
	// even when the scenario never starts.
	time.AfterFunc(pp.scenario, func() {
		pp.mu.Lock()
		defer pp.mu.Unlock()
		if !pp.started {
			pp.stopLocked()
		}
	})
	return pp, nil
}

func (pp *poolProfile) startLocked(phase string) error {
	path := filepath.Join(pp.dir, pp.name+"-"+phase+".pprof")
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("cpu profile %s: %w", path, err)
	}
	if pp.hz > 0 {
		// Set before StartCPUProfile, which keeps it (and says on stderr
		// that it cannot set its own 100 Hz).
		runtime.SetCPUProfileRate(pp.hz)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("cpu profile %s: %w", path, err)
	}
	pp.f, pp.phase = f, phase
	pp.writeAllocs("0")
	pp.log.Info("writing a CPU profile", "path", path)
	return nil
}

// writeAllocs writes the allocations so far (all since the process started)
// to <pool>-<phase>-allocs<suffix>.pprof.
func (pp *poolProfile) writeAllocs(suffix string) {
	path := filepath.Join(pp.dir, pp.name+"-"+pp.phase+"-allocs"+suffix+".pprof")
	f, err := os.Create(path)
	if err == nil {
		err = pprof.Lookup("allocs").WriteTo(f, 0)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		pp.log.Warn("allocation profile", "path", path, "err", err)
	}
}

func (pp *poolProfile) stopLocked() {
	if pp.f == nil {
		return
	}
	pprof.StopCPUProfile()
	pp.writeAllocs("1")
	if err := pp.f.Close(); err != nil {
		pp.log.Warn("closing the CPU profile", "err", err)
	}
	pp.f = nil
}

// scenarioStarted ends the sync profile and starts the scenario's, which
// stops after its length (or at stop, when the pool ends). Later calls do
// nothing.
func (pp *poolProfile) scenarioStarted() {
	if pp == nil {
		return
	}
	pp.mu.Lock()
	defer pp.mu.Unlock()
	if pp.started {
		return
	}
	pp.started = true
	pp.stopLocked()
	if err := pp.startLocked("scenario"); err != nil {
		pp.log.Warn("no scenario profile", "err", err)
		return
	}
	time.AfterFunc(pp.scenario, pp.stop)
}

// stop ends the profile being written, if any.
func (pp *poolProfile) stop() {
	if pp == nil {
		return
	}
	pp.mu.Lock()
	defer pp.mu.Unlock()
	pp.stopLocked()
}

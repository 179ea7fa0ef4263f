package measure

import (
	"cmp"
	"context"
	"slices"
	"sync"
	"time"
)

// SamplePoint is one reading of a component's process.
type SamplePoint struct {
	// T is seconds since the phase started.
	T float64 `json:"t"`
	// CPU is the component's cumulative CPU seconds (over every process
	// that played it: a killed and restarted relay adds up).
	CPU float64 `json:"cpu"`
	// RSS is the resident memory in bytes (0 while no process runs).
	RSS int64 `json:"rss"`
	// Services is the number of services in the mesh at T.
	Services int `json:"services"`
}

// Sampler reads /proc for every component of a phase once per second:
// CPU seconds (utime + stime) and resident memory (VmRSS).
type Sampler struct {
	start time.Time

	mu       sync.Mutex
	procs    map[string]*sampledProc
	order    []string
	services int
}

// sampledProc is one component name and the process playing it now.
type sampledProc struct {
	pid int
	// base is the CPU of the processes that played it before.
	base    float64
	last    procUsage
	maxRSS  int64
	points  []SamplePoint
	running bool
	// trace are Trace's readings.
	trace []cpuPoint
}

// cpuPoint is one of Trace's readings: cumulative CPU seconds at a Unix
// time in nanoseconds.
type cpuPoint struct {
	at  int64
	cpu float64
}

func NewSampler() *Sampler {
	return &Sampler{start: time.Now(), procs: map[string]*sampledProc{}}
}

// Watch starts sampling pid as component name. A name watched before (a
// restarted component) keeps its CPU total.
func (s *Sampler) Watch(name string, pid int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.procs[name]
	if p == nil {
		p = &sampledProc{}
		s.procs[name] = p
		s.order = append(s.order, name)
	} else {
		p.base += p.last.CPU
		p.last = procUsage{}
	}
	p.pid, p.running = pid, true
	s.readLocked(name, p)
}

// Gone records a component's process as exited, after one last reading.
func (s *Sampler) Gone(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.procs[name]; p != nil {
		p.running = false
	}
}

// SetServices records the number of services in the mesh.
func (s *Sampler) SetServices(n int) {
	s.mu.Lock()
	s.services = n
	s.mu.Unlock()
}

// Run samples every second until ctx is done.
func (s *Sampler) Run(ctx context.Context) { every(ctx, time.Second, s.sample) }

// every calls f every interval until ctx is done.
func every(ctx context.Context, interval time.Duration, f func()) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// sample reads every running component once.
func (s *Sampler) sample() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, p := range s.procs {
		s.readLocked(name, p)
	}
}

func (s *Sampler) readLocked(name string, p *sampledProc) {
	if !p.running {
		return
	}
	u, err := readProc(p.pid)
	if err != nil {
		return // exited between two readings: keep the last one
	}
	p.last = u
	p.maxRSS = max(p.maxRSS, u.RSS)
	p.points = append(p.points, SamplePoint{T: time.Since(s.start).Seconds(), CPU: p.base + u.CPU, RSS: u.RSS, Services: s.services})
}

// Trace reads every running component's CPU every interval until ctx is
// done, for CPUBetween: finer than Run's readings, and cheaper (one read
// of /proc/<pid>/stat per component). At 5 ms it costs the harness about
// 1 % of a core with five components.
func (s *Sampler) Trace(ctx context.Context, interval time.Duration) {
	every(ctx, interval, s.traceOnce)
}

// traceOnce reads every running component's CPU for Trace.
func (s *Sampler) traceOnce() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.procs {
		if !p.running {
			continue
		}
		if cpu, err := readProcCPU(p.pid); err == nil {
			p.trace = append(p.trace, cpuPoint{at: time.Now().UnixNano(), cpu: p.base + cpu})
		}
	}
}

// CPUBetween returns a component's CPU seconds between from and to (Unix
// nanoseconds), from the Trace readings around them (linear between two
// readings). The kernel accounts CPU time in ticks, so a window of a
// few tens of milliseconds is known to about 10 ms per component. It
// returns false when the readings do not cover the window.
func (s *Sampler) CPUBetween(name string, from, to int64) (float64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.procs[name]
	if p == nil || len(p.trace) < 2 || from < p.trace[0].at || to > p.trace[len(p.trace)-1].at || to < from {
		return 0, false
	}
	return cpuAt(p.trace, to) - cpuAt(p.trace, from), true
}

// cpuAt interpolates the cumulative CPU of trace at t, which trace covers.
func cpuAt(trace []cpuPoint, t int64) float64 {
	i, _ := slices.BinarySearchFunc(trace, t, func(p cpuPoint, t int64) int { return cmp.Compare(p.at, t) })
	if i == 0 {
		return trace[0].cpu
	}
	a, b := trace[i-1], trace[min(i, len(trace)-1)]
	if b.at == a.at {
		return b.cpu
	}
	return a.cpu + (b.cpu-a.cpu)*float64(t-a.at)/float64(b.at-a.at)
}

// Usage returns a component's cumulative CPU seconds and its largest RSS
// so far, after a fresh reading.
func (s *Sampler) Usage(name string) (cpu float64, maxRSS int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.procs[name]
	if p == nil {
		return 0, 0
	}
	s.readLocked(name, p)
	return p.base + p.last.CPU, p.maxRSS
}

// Names returns the components sampled, in the order first watched.
func (s *Sampler) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.order...)
}

// Series returns a copy of a component's readings.
func (s *Sampler) Series(name string) []SamplePoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p := s.procs[name]; p != nil {
		return append([]SamplePoint(nil), p.points...)
	}
	return nil
}

// Elapsed returns seconds since the phase started.
func (s *Sampler) Elapsed() float64 { return time.Since(s.start).Seconds() }

package launch

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meshrelay/meshrelay/scale-tests/internal/control"
)

// ReadyPrefix starts the line a child prints on stdout once it serves.
const ReadyPrefix = "READY "

// ReadyInfo is what a child reports when it is ready.
type ReadyInfo struct {
	// Control is the child's control address (HTTP on loopback).
	Control string `json:"control"`
	// Addr is the role's service address: the simulator's xDS address or
	// etcd's client URL.
	Addr string `json:"addr,omitempty"`
}

// Component is one child process: the harness binary re-executed with a
// hidden --role flag, so that its CPU and memory are its own.
type Component struct {
	// Name is the component's name; PID its process id.
	Name string
	PID  int
	cmd  *exec.Cmd
	// Ready is what the child reported once it served; Control
	// reaches its control API.
	Ready   ReadyInfo
	Control *control.Client

	// exited is closed when the process has exited; err is then its exit
	// error (nil for status 0).
	exited chan struct{}
	err    error
	// stdin stays open while the harness lives: the child exits on EOF.
	stdin io.WriteCloser
	// expected is set before the harness stops or kills the process on
	// purpose, so that its exit is not reported as a failure.
	expected atomic.Bool
	tail     *lineRing
}

// Launcher starts components and reports the ones that die unexpectedly.
type Launcher struct {
	exe    string
	logDir string
	log    *slog.Logger

	// Died receives every Component that exits without the harness asking
	// it to. It is buffered for all of them; nobody has to read it.
	Died chan *Component

	mu   sync.Mutex
	live map[int]*Component
}

func NewLauncher(exe, logDir string, log *slog.Logger) *Launcher {
	return &Launcher{exe: exe, logDir: logDir, log: log, Died: make(chan *Component, 64), live: map[int]*Component{}}
}

// start runs role as a child named name with the JSON of cfg as its
// configuration and env added to its environment, and waits until it
// reports ready (or exits, or ctx ends, or 90 s pass).
func (l *Launcher) Start(ctx context.Context, name, role string, cfg any, env ...string) (*Component, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("%s config: %w", name, err)
	}
	// The configuration goes in a file: a node pool's is larger than the
	// kernel takes as one argument (128 KiB).
	cfgPath := filepath.Join(l.logDir, name+".config.json")
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		return nil, fmt.Errorf("%s config: %w", name, err)
	}
	logFile, err := os.Create(filepath.Join(l.logDir, name+".log"))
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	cmd := exec.Command(l.exe, "--role="+role, "--role-config=@"+cfgPath)
	cmd.SysProcAttr = childProcAttr()
	cmd.Env = append(append(os.Environ(), "GOTRACEBACK=all"), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	// The child watches its stdin: EOF means the harness is gone.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	c := &Component{Name: name, cmd: cmd, stdin: stdin, exited: make(chan struct{}), tail: newLineRing(20)}
	sink := &lockedWriter{w: logFile}
	cmd.Stderr = io.MultiWriter(sink, c.tail)
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c.PID = cmd.Process.Pid
	l.mu.Lock()
	l.live[c.PID] = c
	l.mu.Unlock()

	readyc := make(chan ReadyInfo, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			if !sent && strings.HasPrefix(line, ReadyPrefix) {
				var ri ReadyInfo
				if json.Unmarshal([]byte(line[len(ReadyPrefix):]), &ri) == nil {
					readyc <- ri
					sent = true
					continue
				}
			}
			fmt.Fprintln(sink, line)
			fmt.Fprintln(c.tail, line)
		}
		_, _ = io.Copy(io.Discard, stdout) // after an over-long line: never block the child
	}()
	go func() {
		<-copied // Wait closes stdout: read it to the end first
		c.err = cmd.Wait()
		logFile.Close()
		l.mu.Lock()
		delete(l.live, c.PID)
		l.mu.Unlock()
		close(c.exited)
		if !c.expected.Load() {
			l.Died <- c
		}
	}()

	timer := time.NewTimer(90 * time.Second)
	defer timer.Stop()
	select {
	case ri := <-readyc:
		c.Ready = ri
		c.Control = control.NewClient(ri.Control)
		l.log.Debug("component ready", "name", name, "pid", c.PID, "control", ri.Control, "addr", ri.Addr)
		return c, nil
	case <-c.exited:
		return nil, fmt.Errorf("%s (pid %d) exited before it was ready: %v\n%s", name, c.PID, c.err, c.tail.String())
	case <-timer.C:
		c.Kill()
		return nil, fmt.Errorf("%s (pid %d) not ready after 90 s\n%s", name, c.PID, c.tail.String())
	case <-ctx.Done():
		c.Kill()
		return nil, ctx.Err()
	}
}

// failure describes an unexpected exit for the user.
func (c *Component) Failure() error {
	return fmt.Errorf("component %s (pid %d) died: %v; last output:\n%s", c.Name, c.PID, c.err, c.tail.String())
}

// stop asks the process to exit (SIGTERM) and kills it (SIGKILL) if it has
// not after grace. It returns once the process is gone.
func (c *Component) Stop(grace time.Duration) {
	c.expected.Store(true)
	select {
	case <-c.exited:
		return
	default:
	}
	_ = syscall.Kill(c.PID, syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(grace):
		c.Kill()
	}
}

// kill kills the process (SIGKILL, by PID) and waits until it is gone.
func (c *Component) Kill() {
	c.expected.Store(true)
	select {
	case <-c.exited:
		return
	default:
	}
	_ = syscall.Kill(c.PID, syscall.SIGKILL)
	<-c.exited
}

// stopAll stops every live Component, in parallel.
func (l *Launcher) StopAll(grace time.Duration) {
	l.mu.Lock()
	cs := make([]*Component, 0, len(l.live))
	for _, c := range l.live {
		cs = append(cs, c)
	}
	l.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() { c.Stop(grace) })
	}
	wg.Wait()
}

// lineRing keeps the last lines written to it.
type lineRing struct {
	mu    sync.Mutex
	lines []string
	max   int
	part  string
}

func newLineRing(n int) *lineRing { return &lineRing{max: n} }

func (r *lineRing) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.part + string(p)
	parts := strings.Split(s, "\n")
	r.part = parts[len(parts)-1]
	for _, line := range parts[:len(parts)-1] {
		r.lines = append(r.lines, line)
		if len(r.lines) > r.max {
			r.lines = r.lines[1:]
		}
	}
	return len(p), nil
}

func (r *lineRing) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := strings.Join(r.lines, "\n")
	if r.part != "" {
		out += "\n" + r.part
	}
	if out == "" {
		return "  (no output)"
	}
	return out
}

// lockedWriter serialises writes of stdout and stderr copies to one file.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.w.Write(p)
	if errors.Is(err, os.ErrClosed) {
		return len(p), nil
	}
	return n, err
}

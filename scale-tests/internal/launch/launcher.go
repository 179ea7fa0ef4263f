package launch

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/meshrelay/meshrelay/scale-tests/internal/control"
)

// Launcher starts components and reports the ones that die unexpectedly.
type Launcher struct {
	exe    string
	logDir string
	log    *slog.Logger

	// Died receives every component that exits without the harness asking
	// it to. It is buffered for all of them; nobody has to read it.
	Died chan *Component

	mu   sync.Mutex
	live map[int]*Component
}

func NewLauncher(exe, logDir string, log *slog.Logger) *Launcher {
	return &Launcher{exe: exe, logDir: logDir, log: log, Died: make(chan *Component, 64), live: map[int]*Component{}}
}

// Start runs role as a child named name with the JSON of cfg as its
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

// StopAll stops every live component, in parallel.
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

package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A child is this test binary re-executed to play a role (roleEnv names
// it, configEnv holds its JSON configuration), so that a fault is a signal
// to a real process. It prints readyPrefix and a JSON line once it serves,
// and resultPrefix and a JSON line when it stops. It exits when its stdin
// reaches EOF (the test is gone) or on SIGTERM, and dies with the test
// (Pdeathsig).
const (
	roleEnv      = "MESHRELAY_CHAOS_ROLE"
	configEnv    = "MESHRELAY_CHAOS_CONFIG"
	readyPrefix  = "READY "
	resultPrefix = "RESULT "
)

// child is a running child process started by the test.
type child struct {
	t      *testing.T
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	ready  json.RawMessage
	result chan json.RawMessage
	exited chan struct{}
	tail   *tail
}

// startChild runs role with cfg and waits until it reports ready; the
// test's cleanup kills it if it still runs.
func startChild(t *testing.T, name, role string, cfg any) *child {
	t.Helper()
	raw, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+role, configEnv+"="+string(raw))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c := &child{t: t, name: name, cmd: cmd, result: make(chan json.RawMessage, 1), exited: make(chan struct{}), tail: &tail{}}
	cmd.Stderr = c.tail
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	readyc := make(chan json.RawMessage, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if v, ok := strings.CutPrefix(line, readyPrefix); ok {
				readyc <- json.RawMessage(v)
			} else if v, ok := strings.CutPrefix(line, resultPrefix); ok {
				c.result <- json.RawMessage(v)
			} else {
				c.tail.Write([]byte(line + "\n"))
			}
		}
		io.Copy(io.Discard, stdout)
		cmd.Wait()
		close(c.exited)
	}()
	t.Cleanup(c.kill)
	select {
	case c.ready = <-readyc:
	case <-c.exited:
		t.Fatalf("%s exited before it was ready: %s\n%s", name, cmd.ProcessState, c.tail)
	case <-time.After(60 * time.Second):
		c.kill()
		t.Fatalf("%s not ready after 60 s\n%s", name, c.tail)
	}
	return c
}

// readyInfo decodes what the child reported when ready into v.
func (c *child) readyInfo(v any) {
	c.t.Helper()
	if err := json.Unmarshal(c.ready, v); err != nil {
		c.t.Fatalf("%s ready line %s: %v", c.name, c.ready, err)
	}
}

// pid is the child's process id.
func (c *child) pid() int { return c.cmd.Process.Pid }

// kill sends SIGKILL (by PID) and waits for the process to be gone.
func (c *child) kill() {
	select {
	case <-c.exited:
		return
	default:
	}
	syscall.Kill(c.pid(), syscall.SIGKILL)
	<-c.exited
}

// signal sends sig to the child (by PID): SIGSTOP and SIGCONT pause and
// resume it.
func (c *child) signal(sig syscall.Signal) {
	c.t.Helper()
	if err := syscall.Kill(c.pid(), sig); err != nil {
		c.t.Fatalf("signal %s to %s: %v", sig, c.name, err)
	}
}

// stop closes the child's stdin (its cue to stop) and returns the result
// it prints, if any (nil when it exits without one within 20 s).
func (c *child) stop() json.RawMessage {
	c.stdin.Close()
	select {
	case r := <-c.result:
		<-c.exited
		return r
	case <-c.exited:
		select {
		case r := <-c.result:
			return r
		default:
			return nil
		}
	case <-time.After(20 * time.Second):
		c.kill()
		return nil
	}
}

// procStatus reads a "VmHWM:" style field of /proc/<pid>/status in bytes.
func procStatus(pid int, field string) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(v)
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s %q: %w", field, line, err)
			}
			return n << 10, nil // kB
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no %s", pid, field)
}

// peakRSS is the peak resident set size of process pid.
func peakRSS(pid int) (int64, error) { return procStatus(pid, "VmHWM") }

// tail keeps the last 4 KiB a child wrote, for failure messages; with -v
// it also forwards it to the test's stderr.
type tail struct {
	mu  sync.Mutex
	buf []byte
}

func (l *tail) Write(p []byte) (int, error) {
	if testing.Verbose() {
		os.Stderr.Write(p)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	if n := len(l.buf); n > 4096 {
		l.buf = l.buf[n-4096:]
	}
	return len(p), nil
}

func (l *tail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf)
}

// runChildRole is called by TestMain: when this process is a child, it
// plays its role and exits.
func runChildRole() {
	role := os.Getenv(roleEnv)
	if role == "" {
		return
	}
	f, ok := roles[role]
	if !ok {
		fmt.Fprintf(os.Stderr, "chaos child: unknown role %q\n", role)
		os.Exit(2)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		cancel()
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	go func() {
		<-sigs
		cancel()
	}()
	ready := func(v any) {
		b, _ := json.Marshal(v)
		fmt.Printf("%s%s\n", readyPrefix, b)
	}
	result, err := f(ctx, []byte(os.Getenv(configEnv)), ready)
	if result != nil {
		b, _ := json.Marshal(result)
		fmt.Printf("%s%s\n", resultPrefix, b)
	}
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(os.Stderr, "chaos child %s: %v\n", role, err)
		os.Exit(1)
	}
	os.Exit(0)
}

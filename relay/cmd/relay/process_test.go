package main

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// childEnv makes the test binary run the relay command instead of the
// tests: the multi-process tests start replicas as child processes.
const childEnv = "RELAY_TEST_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// process is one relay replica running as a child process.
type process struct {
	id      string
	cmd     *exec.Cmd
	metrics string
	log     string
	exited  chan struct{} // closed once the process is gone and reaped
	waitErr error         // cmd.Wait's answer, once exited is closed
}

// startProcess runs the relay command with id against the simulator at
// istiod and etcd (4 shards and a 2 s lease unless extra says otherwise:
// later flags win). The test's cleanup kills it if it still runs.
func startProcess(t *testing.T, id, istiod string, etcd []string, extra ...string) *process {
	t.Helper()
	p := &process{id: id, metrics: freeAddr(t), log: filepath.Join(t.TempDir(), id+".log"), exited: make(chan struct{})}
	out, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--istiod", istiod, "--etcd-endpoints", strings.Join(etcd, ","), "--relay-id", id,
		"--lease-ttl", "2s", "--shards", "4", "--metrics-listen", p.metrics, "--log-level", "debug"}, extra...)
	p.cmd = exec.Command(os.Args[0], args...)
	p.cmd.Env = append(os.Environ(), childEnv+"=1")
	p.cmd.Stdout, p.cmd.Stderr = out, out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGCONT)
		p.cmd.Process.Kill()
		<-p.exited
		out.Close()
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("log of %s (last 4 KiB):\n%s", id, b[max(0, len(b)-4096):])
		}
	})
	return p
}

func (p *process) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s %v: %v", p.id, sig, err)
	}
}

// kill sends SIGKILL by PID and waits until the process is reaped.
func (p *process) kill(t *testing.T) {
	t.Helper()
	p.signal(t, syscall.SIGKILL)
	<-p.exited
}

// terminate sends SIGTERM, as a rolling restart does, and waits for a
// clean exit (30 s at most).
func (p *process) terminate(t *testing.T) {
	t.Helper()
	p.signal(t, syscall.SIGTERM)
	select {
	case <-p.exited:
		if p.waitErr != nil {
			t.Errorf("%s after SIGTERM: %v", p.id, p.waitErr)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s still running 30 s after SIGTERM", p.id)
	}
}

// metric returns the value of one unlabelled metric of the process.
func (p *process) metric(t *testing.T, name string) string {
	t.Helper()
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		return "unreachable: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		return "absent"
	}
	return string(m[1])
}

package e2e

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/testsupport/cgroupclient"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

// TestBPFAgentKilledUnderLoad runs the real nodeagent binary over the bpf
// datapath while a client in the programs' cgroup connects to a service
// VIP continuously. The agent is killed (SIGKILL) and started again: no
// connect fails meanwhile (pinned maps and links keep translating), and the
// restarted agent writes no map entry.
func TestBPFAgentKilledUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the nodeagent binary; skipped in -short")
	}
	env := newBPFEnv(t)
	w := newWorld(t, istiodsim.Options{Services: 6, EndpointsPerService: 3})
	truth := w.sim.Truth()[3]
	backends := map[string]bool{}
	for _, ep := range truth.Endpoints {
		b, err := cgroupclient.ServeTCP(netip.AddrPortFrom(netip.MustParseAddr(ep.Address), uint16(ep.TargetPorts[80])), ep.Address)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		backends[ep.Address] = true
	}
	bin := filepath.Join(t.TempDir(), "nodeagent")
	build := exec.Command("go", "build", "-o", bin, "github.com/meshrelay/meshrelay/nodeagent/cmd/nodeagent")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build nodeagent: %v\n%s", err, out)
	}

	start := func() (*exec.Cmd, string) {
		metrics := freeLoopbackAddr(t)
		cmd := exec.Command(bin,
			"--datapath=bpf", "--bpf-pin-path="+env.pin, "--cgroup-path="+env.cgroup,
			"--etcd-endpoints="+w.url, "--services="+w.svcKey(3).String(),
			"--service-cidrs=127.77.0.0/16", "--metrics-listen="+metrics, "--node-name=kill-test")
		cmd.Stderr = &logTail{t: t}
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				cmd.Process.Kill() // our child, by PID
				cmd.Wait()
			}
		})
		testenv.Eventually(t, "agent ready", func() error { return httpOK("http://" + metrics + "/readyz") })
		return cmd, metrics
	}

	first, _ := start()
	client, err := cgroupclient.Start(env.cgroup, "-test.run=^$")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	vip := truth.VIPs[0] + ":80"
	if res, err := client.Do(cgroupclient.Request{Op: "tcp", Addr: vip, N: 3}); err != nil || res.Errors != 0 {
		t.Fatalf("before the kill: %+v %v", res, err)
	}

	// ~6 s of connects, every 10 ms, from a second client in the cgroup.
	loop, err := cgroupclient.Start(env.cgroup, "-test.run=^$")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loop.Close() })
	type outcome struct {
		res cgroupclient.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := loop.Do(cgroupclient.Request{Op: "tcp", Addr: vip, N: 600, Interval: 10 * time.Millisecond})
		done <- outcome{res, err}
	}()
	time.Sleep(time.Second)
	if err := first.Process.Signal(syscall.SIGKILL); err != nil { // by PID
		t.Fatal(err)
	}
	first.Wait()
	time.Sleep(500 * time.Millisecond) // connects go on with no agent at all
	_, metrics := start()
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	total, err := o.res.Answered(backends)
	if err != nil {
		t.Errorf("%s: %v", truth.Name, err)
	}
	if o.res.Errors != 0 || total == 0 {
		t.Fatalf("%d connects failed across the kill and restart (first: %s); %d succeeded", o.res.Errors, o.res.FirstErr, total)
	}
	written, err := metricSum("http://"+metrics+"/metrics", "meshrelay_nodeagent_entries_written_total")
	if err != nil {
		t.Fatal(err)
	}
	if written != 0 {
		t.Fatalf("restarted agent wrote %v map entries, want 0", written)
	}
	t.Logf("%d connects across a SIGKILL and restart of the agent, 0 failed; restarted agent wrote 0 entries", total)
}

func freeLoopbackAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func httpOK(url string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return nil
}

// metricSum adds every sample of a metric family in a /metrics page.
func metricSum(url, name string) (float64, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sum, found := 0.0, false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", line, err)
		}
		sum, found = sum+v, true
	}
	if !found {
		return 0, fmt.Errorf("%s: no metric %s", url, name)
	}
	return sum, sc.Err()
}

// logTail forwards a child's stderr to the test log when -v.
type logTail struct{ t *testing.T }

func (l *logTail) Write(p []byte) (int, error) {
	if testing.Verbose() {
		os.Stderr.Write(p)
	}
	return len(p), nil
}

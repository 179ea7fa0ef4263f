package chaos

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/testsupport/cgroupclient"
	"github.com/meshrelay/meshrelay/internal/testsupport/dpfake"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
)

// TestBPFAgentKilledUnderConnectLoop: a node agent over the bpf datapath
// runs in its own process while a client in the programs' cgroup connects
// to a service VIP in a loop. The agent gets SIGKILL three times and is
// started again each time: no connect fails (the pinned maps and links
// keep translating with no agent at all), and a restarted agent writes no
// map entry.
func TestBPFAgentKilledUnderConnectLoop(t *testing.T) {
	r := &result{Injected: "node agent (bpf datapath, own process) `kill -9` ×3 and restarted, while a cgroup client connects every 10 ms"}
	report(t, r)
	if testing.Short() {
		t.Skip("runs the bpf datapath in a child process; skipped in -short")
	}
	pin, cg := dpfake.CgroupEnv(t, "meshrelay-chaos-")
	// Endpoint addresses follow the simulator's endpoint count: a service
	// far down the list has backends (127.1.1.x) that the e2e package's
	// bpf tests, which may run at the same time, do not listen on.
	const svc = 110
	c := newCluster(t, istiodsim.Options{Services: 120, EndpointsPerService: 3})
	truth := c.sim.Truth()[svc]
	backends := map[string]bool{}
	for _, ep := range truth.Endpoints {
		b, err := cgroupclient.ServeTCP(netip.AddrPortFrom(netip.MustParseAddr(ep.Address), uint16(ep.TargetPorts[80])), ep.Address)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { b.Close() })
		backends[ep.Address] = true
	}
	cfg := agentConfig{Etcd: c.etcdURL, PinPath: pin, CgroupPath: cg,
		Services: []string{c.keys([]int{svc})[0].String()}, ServiceCIDRs: []string{"127.77.0.0/16"}}
	ag := startChild(t, "agent", "agent", cfg)

	vip := truth.VIPs[0] + ":80"
	loop, err := cgroupclient.Start(cg, "-test.run=^$")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loop.Close() })
	kills := 3
	n := 200 * (kills + 1) // 10 ms apart: about 2 s per kill
	type outcome struct {
		res cgroupclient.Result
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		res, err := loop.Do(cgroupclient.Request{Op: "tcp", Addr: vip, N: n, Interval: 10 * time.Millisecond})
		done <- outcome{res, err}
	}()
	var written int64
	for range kills {
		time.Sleep(time.Second)
		ag.kill()
		time.Sleep(300 * time.Millisecond) // connects go on with no agent
		ag = startChild(t, "agent", "agent", cfg)
	}
	o := <-done
	if raw := ag.stop(); raw != nil {
		var res agentResult
		if err := json.Unmarshal(raw, &res); err != nil {
			t.Fatal(err)
		}
		written = res.Updates + res.Deletes
	} else {
		t.Error("the last agent reported no result")
	}
	if o.err != nil {
		t.Fatal(o.err)
	}
	total, err := o.res.Answered(backends)
	if err != nil {
		t.Errorf("%s: %v", truth.Name, err)
	}
	if o.res.Errors != 0 || total == 0 {
		t.Fatalf("%d connects failed across %d kills (first: %s); %d succeeded", o.res.Errors, kills, o.res.FirstErr, total)
	}
	if written != 0 {
		t.Errorf("the restarted agent wrote %d map entries, want 0", written)
	}
	r.Writes = fmt.Sprintf("%d entries by the restarted agent", written)
	r.Figures = fmt.Sprintf("%d connects across %d kills, %d failed", total, kills, o.res.Errors)
}

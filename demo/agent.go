package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/cgroupclient"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/nodeagent"
	"github.com/meshrelay/meshrelay/nodeagent/cmd/nodeagent/dumpview"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

var serviceCIDRs = []netip.Prefix{netip.MustParsePrefix("127.77.0.0/16")}

// node is the demo's node agent and, with the bpf datapath, the cgroup
// its programs translate and the backends behind the declared services.
type node struct {
	agent   *nodeagent.Agent
	dp      datapath.Datapath
	kind    string // "bpf" or "memory"
	pin     string // bpf: pin directory
	cgroup  string // bpf: the cgroup the programs attach to
	stop    func()
	cleanup []func()
}

func (n *node) close() {
	n.stop()
	for i := len(n.cleanup) - 1; i >= 0; i-- {
		n.cleanup[i]()
	}
}

// startNode runs a node agent that declares services, over the bpf
// datapath when this process may use it (root, bpffs, cgroup v2), and the
// memory datapath otherwise, saying which and why.
func startNode(ctx context.Context, out io.Writer, etcd *clientv3.Client, declared []keyspace.Service, log *slog.Logger) (*node, error) {
	n := &node{}
	opts := nodeagent.Options{
		NodeName:     "demo-node",
		Services:     declared,
		OnDemand:     true,
		ServiceCIDRs: serviceCIDRs,
		Logger:       log,
	}
	if why := n.openBPF(log, &opts); why != "" {
		n.kind = "memory"
		n.dp = datapath.NewMemory(datapath.MemoryOptions{Logger: log})
		fmt.Fprintf(out, "==> node agent: memory datapath (%s); sockets are not translated\n", why)
	} else {
		fmt.Fprintf(out, "==> node agent: bpf datapath, maps pinned under %s, programs attached to cgroup %s\n", n.pin, n.cgroup)
	}
	a, err := nodeagent.New(etcd, n.dp, opts)
	if err != nil {
		n.close2()
		return nil, err
	}
	n.agent = a
	actx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- a.Run(actx) }()
	n.stop = func() { cancel(); <-done }
	deadline := time.Now().Add(30 * time.Second)
	for {
		if ok, _ := a.Ready(); ok {
			return n, nil
		}
		if time.Now().After(deadline) {
			_, why := a.Ready()
			n.close()
			return nil, fmt.Errorf("node agent not ready after 30 s: %s", why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// close2 releases what openBPF acquired when the agent never started.
func (n *node) close2() {
	n.stop = func() {}
	n.close()
}

// openBPF opens the bpf datapath in a demo pin directory and a demo child
// cgroup. It returns why not when it cannot.
func (n *node) openBPF(log *slog.Logger, opts *nodeagent.Options) string {
	if os.Geteuid() != 0 {
		return "not root"
	}
	if err := cgroupclient.CheckCgroup2(datapath.DefaultCgroupPath); err != nil {
		return err.Error()
	}
	n.pin = filepath.Join(datapath.BPFFSMount, "meshrelay-demo-"+strconv.Itoa(os.Getpid()))
	cg, err := cgroupclient.NewCgroup(datapath.DefaultCgroupPath, "meshrelay-demo-")
	if err != nil {
		return err.Error()
	}
	// The agent attaches the programs (Datapath.Attach) to opts.ServiceCIDRs.
	b, err := datapath.OpenBPF(datapath.BPFOptions{PinPath: n.pin, Logger: log,
		Programs: datapath.ProgramsOptions{CgroupPath: cg, MissInterval: 100 * time.Millisecond}})
	if err != nil {
		cgroupclient.RemoveCgroup(cg)
		os.RemoveAll(n.pin)
		return "bpf unavailable: " + err.Error()
	}
	n.kind, n.dp, n.cgroup = "bpf", b, cg
	n.cleanup = append(n.cleanup,
		func() { cgroupclient.RemoveCgroup(cg) },
		func() { datapath.Uninstall(n.pin); os.RemoveAll(n.pin) },
		func() { b.Close() })
	return ""
}

// printDump prints what `nodeagent dump` prints: the datapath as JSON.
func (n *node) printDump(ctx context.Context, out io.Writer, limit int) error {
	st, err := n.dp.Dump(ctx)
	if err != nil {
		return err
	}
	v := dumpview.NewView(st)
	full := len(v.Frontends)
	if len(v.Frontends) > limit {
		v.Frontends = v.Frontends[:limit]
	}
	b, err := json.MarshalIndent(v, "    ", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "    %s\n", b)
	if full > limit {
		fmt.Fprintf(out, "    (%d of %d frontends shown)\n", limit, full)
	}
	if n.kind == "bpf" {
		fmt.Fprintf(out, "    the same from the pinned maps: go run ./nodeagent/cmd/nodeagent dump --bpf-pin-path %s\n", n.pin)
	}
	return nil
}

// dialVIPs, bpf only: starts TCP backends on the endpoints of services,
// then connects to each service's VIP from a client inside the programs'
// cgroup and prints which backend answered each connect. The last service
// is not declared: its first connect is a miss that loads it on demand.
func (n *node) dialVIPs(out io.Writer, services []istiodsim.ServiceTruth) error {
	if n.kind != "bpf" {
		return nil
	}
	for _, s := range services {
		for _, ep := range s.Endpoints {
			addr := netip.AddrPortFrom(netip.MustParseAddr(ep.Address), uint16(ep.TargetPorts[80]))
			b, err := cgroupclient.ServeTCP(addr, "backend "+addr.String())
			if err != nil {
				return err
			}
			n.cleanup = append(n.cleanup, func() { b.Close() })
		}
	}
	c, err := cgroupclient.Start(n.cgroup)
	if err != nil {
		return err
	}
	n.cleanup = append(n.cleanup, func() { c.Close() })
	fmt.Fprintf(out, "==> connecting to service VIPs from pid %d inside cgroup %s (real TCP backends on 127.0.x.y)\n", c.Pid(), n.cgroup)
	for i, s := range services {
		vip := s.VIPs[0] + ":80"
		onDemand := i == len(services)-1
		if onDemand {
			fmt.Fprintf(out, "    %s/%s is not declared: the first connect is a miss the programs report, and the agent loads it\n", s.Namespace, s.Name)
		}
		for try := 0; try < 3; try++ {
			deadline := time.Now().Add(5 * time.Second)
			var res cgroupclient.Result
			for {
				res, err = c.Do(cgroupclient.Request{Op: "tcp", Addr: vip, N: 1})
				if err != nil {
					return err
				}
				if res.Errors == 0 || time.Now().After(deadline) {
					break
				}
				fmt.Fprintf(out, "    connect %s → failed (%s); retrying\n", vip, res.FirstErr)
				time.Sleep(200 * time.Millisecond)
			}
			for backend := range res.Backends {
				for peer := range res.Peers {
					fmt.Fprintf(out, "    connect %-17s → answered by %s (getpeername says %s)\n", vip, backend, peer)
				}
			}
			if res.Errors > 0 {
				return errors.New("connects to " + vip + " keep failing")
			}
		}
	}
	return nil
}

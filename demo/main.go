package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/etcddial"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/opsserver"
	"github.com/meshrelay/meshrelay/internal/testsupport/cgroupclient"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/relay"
	"github.com/prometheus/client_golang/prometheus"
)

func main() {
	cgroupclient.RunIfChild() // the demo's connect client, re-executed in the cgroup
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

const (
	services  = 300
	endpoints = 4
)

func run(ctx context.Context, out io.Writer) error {
	if s := os.Getenv("DEMO_SECONDS"); s != "" && s != "0" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return fmt.Errorf("DEMO_SECONDS=%q: want a number of seconds", s)
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(n)*time.Second)
		defer cancel()
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	step := func(format string, args ...any) { fmt.Fprintf(out, "==> "+format+"\n", args...) }

	step("starting embedded etcd (in-memory, loopback)")
	etcd, err := embedetcd.Start(ctx, embedetcd.Options{Logger: log})
	if err != nil {
		return err
	}
	defer etcd.Close()
	ep := etcd.Endpoints()[0]

	step("starting the Istiod simulator: %d services × %d endpoints, 2 ports each, VIPs in 127.77.0.0/16", services, endpoints)
	sim, err := istiodsim.New(istiodsim.Options{Services: services, EndpointsPerService: endpoints, Namespaces: 3, PortsPerService: 2, Weights: true, Logger: log})
	if err != nil {
		return err
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		return err
	}
	defer sim.Stop()

	client, err := etcddial.Dial(etcddial.Options{Endpoints: []string{ep}})
	if err != nil {
		return err
	}
	defer client.Close()
	reg := prometheus.NewRegistry()
	rl, err := relay.New(client, relay.Options{Istiod: sim.Addr(), RelayID: "demo-relay", Registerer: reg, Logger: log})
	if err != nil {
		return err
	}
	ops, err := opsserver.Start(opsserver.Options{Listen: "127.0.0.1:0", Gatherer: reg, Ready: rl.Ready})
	if err != nil {
		return err
	}
	defer ops.Close(context.Background())
	step("starting the relay: Istiod %s → etcd %s (metrics http://%s/metrics)", sim.Addr(), ep, ops.Addr())
	rctx, cancelRelay := context.WithCancel(ctx)
	relayDone := make(chan error, 1)
	go func() { relayDone <- rl.Run(rctx) }()
	defer func() { cancelRelay(); <-relayDone }()

	space := keyspace.New("")
	start := time.Now()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-relayDone:
			return fmt.Errorf("relay stopped: %w", err)
		case <-rl.Synced():
			break wait
		case <-tick.C:
			n := countKeys(ctx, client, space.ServicesPrefix())
			fmt.Fprintf(out, "    %5.2fs  %d service keys in etcd, ready: %v\n", time.Since(start).Seconds(), n, ready(rl))
		}
	}
	n := countKeys(ctx, client, space.ServicesPrefix())
	step("first complete sync in %v: %d service keys, synced/* markers written, /readyz is ready", time.Since(start).Round(time.Millisecond), n)

	truth := sim.Truth()
	first := truth[0].Namespace + "/" + truth[0].Name
	fmt.Fprintf(out, `
Look at the result (while the demo runs):
  etcdctl --endpoints=%[1]s get --prefix %[2]s --keys-only | head
  etcdctl --endpoints=%[1]s get %[3]s --print-value-only | go run ./relay/cmd/relay decode
  etcdctl --endpoints=%[1]s get %[4]s
  go run ./relay/cmd/relay inspect --etcd-endpoints=%[1]s %[5]s
  curl -s http://%[6]s/metrics | grep meshrelay_relay_etcd

`, ep, space.Prefix(), space.Spec(keyspace.Service{Namespace: truth[0].Namespace, Name: truth[0].Name}),
		space.VIP(truth[0].VIPs[0]), first, ops.Addr())

	var declared []keyspace.Service
	for _, s := range truth[:5] {
		declared = append(declared, keyspace.Service{Namespace: s.Namespace, Name: s.Name})
	}
	node, err := startNode(ctx, out, client, declared, log)
	if err != nil {
		return err
	}
	defer node.close()
	st := node.agent.Stats()
	step("node agent ready: %d declared services of %d, %d etcd watches; %d frontends, %d slots, %d backends written in %d syscalls",
		st.Declared, len(truth), st.Source.WatchesOpen, st.Frontends, st.Slots, st.Backends, st.Syscalls)
	if err := node.printDump(ctx, out, 2); err != nil {
		return err
	}
	if err := node.dialVIPs(out, append(truth[:5:5], truth[7])); err != nil {
		return err
	}

	step("pushing an endpoint change every 2 s, alternating declared and other services (Ctrl-C to stop)")
	churn := time.NewTicker(2 * time.Second)
	defer churn.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			step("stopping")
			return nil
		case err := <-relayDone:
			return fmt.Errorf("relay stopped: %w", err)
		case <-churn.C:
			svc := (i * 37) % len(truth)
			if i%2 == 0 {
				svc = (i / 2) % 5 // a declared service: the agent applies it
			}
			before := revision(ctx, client)
			if err := sim.ChurnEndpoints(truth[svc].Index, 1); err != nil {
				return err
			}
			time.Sleep(300 * time.Millisecond)
			st, as := rl.Stats(), node.agent.Stats()
			fmt.Fprintf(out, "    churned %s/%s: etcd revision %d → %d; relay: %d txns, %d puts; agent: %d map entries written in %d syscalls, push→map lag p50 %s p99 %s over %d changes\n",
				truth[svc].Namespace, truth[svc].Name, before, revision(ctx, client), st.Txns, st.Puts,
				as.Updates+as.Deletes, as.Syscalls, seconds(as.Lag.P50), seconds(as.Lag.P99), as.Lag.Count)
		}
	}
}

func seconds(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(100 * time.Microsecond)
}

func ready(r *relay.Relay) string {
	ok, why := r.Ready()
	if ok {
		return "yes"
	}
	return "no (" + why + ")"
}

func countKeys(ctx context.Context, kv clientv3.KV, prefix string) int64 {
	resp, err := kv.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return -1
	}
	return resp.Count
}

func revision(ctx context.Context, kv clientv3.KV) int64 {
	resp, err := kv.Get(ctx, "/meshrelay-demo-probe")
	if err != nil {
		return -1
	}
	return resp.Header.Revision
}

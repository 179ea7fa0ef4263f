package main

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// bound runs a command bound to a fresh config with args and returns the
// config it validated.
func bound(t *testing.T, args ...string) *config {
	t.Helper()
	cfg := &config{}
	cmd := cliconfig.Bound(&cobra.Command{Use: "nodeagent"}, cfg, func(context.Context, []string) error { return nil })
	cmd.SetArgs(args)
	if err := cmd.Execute(); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return cfg
}

func TestConfigOptions(t *testing.T) {
	file := filepath.Join(t.TempDir(), "agent.yaml")
	body := "services: [ns/web, ns/db]\nnamespaces: [team]\nservice-cidrs: [127.77.1.2/16]\nidle-timeout: 0s\nflush-window: 0s\nshards: 8\n"
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MESHRELAY_ETCD_ENDPOINTS", "http://127.0.0.1:1")
	t.Setenv("MESHRELAY_NODE_NAME", "n1")
	cfg := bound(t, "--config", file, "--shards=4", "--cluster=east")
	opts, err := cfg.options()
	if err != nil {
		t.Fatal(err)
	}
	wantSvcs := []keyspace.Service{{Namespace: "ns", Name: "web"}, {Namespace: "ns", Name: "db"}}
	switch {
	case !slices.Equal(opts.Services, wantSvcs):
		t.Errorf("services from file: %v", opts.Services)
	case !slices.Equal(opts.Namespaces, []string{"team"}):
		t.Errorf("namespaces from file: %v", opts.Namespaces)
	case !slices.Equal(opts.ServiceCIDRs, []netip.Prefix{netip.MustParsePrefix("127.77.0.0/16")}):
		t.Errorf("service CIDRs (masked): %v", opts.ServiceCIDRs)
	case opts.Shards != 4 || opts.Cluster != "east":
		t.Errorf("flags over file: shards %d cluster %q", opts.Shards, opts.Cluster)
	case opts.NodeName != "n1":
		t.Errorf("node name from env: %q", opts.NodeName)
	case opts.IdleTimeout >= 0 || opts.FlushWindow >= 0:
		t.Errorf("0 means never / at once: idle %v flush %v", opts.IdleTimeout, opts.FlushWindow)
	case !opts.OnDemand || opts.MaxServices != 10_000:
		t.Errorf("defaults: on-demand %v max-services %d", opts.OnDemand, opts.MaxServices)
	}
	if cfg.Datapath.kind != datapathBPF || cfg.Datapath.explicit {
		t.Errorf("default datapath: %+v, want bpf, not explicit", cfg.Datapath)
	}

	cfg = bound(t, "--idle-timeout=1m", "--flush-window=5ms")
	if opts, err := cfg.options(); err != nil || opts.IdleTimeout != time.Minute || opts.FlushWindow != 5*time.Millisecond {
		t.Errorf("durations: %v %v (%v)", opts.IdleTimeout, opts.FlushWindow, err)
	}
	cfg = bound(t, "--stall-timeout=30s")
	if opts, err := cfg.options(); err != nil || opts.StallTimeout != 30*time.Second {
		t.Errorf("--stall-timeout: %v (%v)", opts.StallTimeout, err)
	}
}

// TestDatapathExplicit: --datapath given anywhere (flag, environment,
// file) is explicit, so an unavailable bpf is an error, not a fallback.
func TestDatapathExplicit(t *testing.T) {
	t.Setenv("MESHRELAY_ETCD_ENDPOINTS", "http://127.0.0.1:1")
	if cfg := bound(t, "--datapath=bpf"); !cfg.Datapath.explicit {
		t.Error("flag not explicit")
	}
	t.Setenv("MESHRELAY_DATAPATH", "bpf")
	if cfg := bound(t); !cfg.Datapath.explicit || cfg.Datapath.kind != datapathBPF {
		t.Errorf("environment: %+v", cfg.Datapath)
	}
	t.Setenv("MESHRELAY_DATAPATH", "memory")
	if cfg := bound(t); cfg.Datapath.kind != datapathMemory {
		t.Errorf("environment: %+v", cfg.Datapath)
	}
}

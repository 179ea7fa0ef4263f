package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshrelay/meshrelay/scale-tests/internal/config"
	"github.com/meshrelay/meshrelay/scale-tests/internal/report"
	"github.com/meshrelay/meshrelay/scale-tests/internal/results"
)

// TestMain lets the test binary play the harness's components: the smoke
// test runs the harness in-process, and the harness re-executes its own
// binary (this test binary) with --role for every component.
func TestMain(m *testing.M) {
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "--role=") {
			os.Exit(command(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
		}
	}
	os.Exit(m.Run())
}

// TestSmoke runs the whole harness at tiny sizes: every component in its
// own process, both modes, two scenarios (one with -short, which still
// runs the correctness gate). It fails on any correctness mismatch (the
// harness exits non-zero), and checks the figures a broken harness would
// get wrong. It asserts nothing about timing.
func TestSmoke(t *testing.T) {
	for _, tc := range []struct {
		name, scenario string
		extra          []string
		api            string
	}{
		{name: "rolling-restart", scenario: config.ScenarioRolling, api: config.APISotW},
		{name: "etcd-wipe", scenario: config.ScenarioEtcdWipe, extra: []string{"--on-demand"}, api: config.APISotW},
		{name: "rolling-restart-workload", scenario: config.ScenarioRolling, extra: []string{"--xds-api", "workload"}, api: config.APIWorkload},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() && tc.name != "rolling-restart" {
				t.Skip("-short: one scenario is enough")
			}
			out := filepath.Join(t.TempDir(), "results")
			args := append([]string{
				"--scenario", tc.scenario,
				"--services", "300", "--endpoints-per-service", "3", "--nodes", "6", "--services-per-node", "4",
				"--duration", "3s", "--churn-rate", "60", "--progress=false", "--out", out,
			}, tc.extra...)
			var stdout, stderr bytes.Buffer
			if code := command(args, strings.NewReader(""), &stdout, &stderr); code != 0 {
				t.Fatalf("harness exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
			}
			var sum results.Summary
			b, err := os.ReadFile(filepath.Join(out, "summary.json"))
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &sum); err != nil {
				t.Fatal(err)
			}
			if !sum.OK || len(sum.Modes) != 2 {
				t.Fatalf("summary: ok %v, %d modes, errors %v", sum.OK, len(sum.Modes), sum.Errors)
			}
			for _, m := range sum.Modes {
				if !m.GateOK || m.Gate.Mismatched != 0 || m.Gate.Nodes != 6 {
					t.Errorf("%s: gate %+v", m.Mode, m.Gate)
				}
				if m.Components[results.CompNodes] == nil || m.Components[results.CompNodes].MaxRSS == 0 {
					t.Errorf("%s: node pool not sampled: %+v", m.Mode, m.Components)
				}
				// Map memory is the kernel's as root, a labelled model otherwise.
				if pn := m.PerNode; os.Geteuid() == 0 && (pn.MemlockSource != results.MemlockKernel || len(pn.MemlockNodes) == 0 || pn.MemlockBytes <= 0) ||
					os.Geteuid() != 0 && (pn.MemlockSource != results.MemlockModel || pn.MemlockNote == "") {
					t.Errorf("%s: map memory %.0f B from %q (%d nodes replayed, note %q)", m.Mode, pn.MemlockBytes, pn.MemlockSource, len(pn.MemlockNodes), pn.MemlockNote)
				}
			}
			for _, m := range sum.Modes {
				want := 0
				if tc.api == config.APIWorkload {
					want = m.Istiod.Streams
				}
				if m.Skipped == "" && m.Istiod.DeltaStreams != want {
					t.Errorf("%s mode, %s API: %d of %d Istiod streams are delta, want %d", m.Mode, tc.api, m.Istiod.DeltaStreams, m.Istiod.Streams, want)
				}
			}
			relay := sum.Modes[0]
			if relay.Mode != config.ModeRelay || relay.Istiod.Streams != 1 {
				t.Errorf("relay mode: %s with %d Istiod streams, want 1", relay.Mode, relay.Istiod.Streams)
			}
			if relay.Lag.Samples == 0 || relay.Writes.EndpointEvents == 0 {
				t.Errorf("relay mode measured no propagation: lag %+v, writes %+v", relay.Lag, relay.Writes)
			}
			if tc.scenario == config.ScenarioEtcdWipe {
				if w := relay.Details.EtcdWipe; w == nil || w.EtcdRebuildSeconds <= 0 || w.MapDeletesDuringRecovery != 0 {
					t.Errorf("etcd wipe: details %+v", w)
				}
				if sum.Modes[1].Skipped == "" {
					t.Error("direct mode ran the etcd-wipe scenario")
				}
			} else {
				if len(relay.Lag.Stages) != 5 || relay.Lag.StageSamples == 0 || relay.Lag.StageSamples > relay.Lag.Samples {
					t.Errorf("relay mode: %d lag stages over %d of %d samples, want 5 over some", len(relay.Lag.Stages), relay.Lag.StageSamples, relay.Lag.Samples)
				}
				if f := relay.Lag.Fanout; f == nil || f.Nodes == 0 || f.Last < f.First || f.CPUMs[results.CompNodes] < 0 {
					t.Errorf("relay mode: largest fan-out %+v, want one with deliveries and CPU", f)
				} else if _, ok := f.CPUMs[results.CompEtcd]; !ok {
					t.Errorf("relay mode: largest fan-out without etcd's CPU: %+v", f)
				}
				direct := sum.Modes[1]
				if direct.Istiod.Streams != 6 || direct.Lag.Samples == 0 {
					t.Errorf("direct mode: %d streams (want 6), %d lag samples", direct.Istiod.Streams, direct.Lag.Samples)
				}
			}
			plots := []string{"report.md", report.PlotLag, report.PlotCPU, report.PlotMemory}
			if os.Geteuid() == 0 {
				plots = append(plots, report.PlotMemlock)
			}
			rep, err := os.ReadFile(filepath.Join(out, "report.md"))
			if err != nil {
				t.Fatal(err)
			}
			if want := "Upstream xDS API: **" + tc.api + "**"; !strings.Contains(string(rep), want) || sum.Config.API() != tc.api {
				t.Errorf("report.md does not say %q, or summary says API %q", want, sum.Config.API())
			}
			for _, f := range plots {
				if fi, err := os.Stat(filepath.Join(out, f)); err != nil || fi.Size() == 0 {
					t.Errorf("%s: %v", f, err)
				}
			}
		})
	}
}

// TestSmokeRelayKill runs relay-kill with three replicas at tiny sizes:
// a shard leader is killed mid-churn, the others take its shards over,
// the gate passes. It waits for a lease to expire (about 25 s).
func TestSmokeRelayKill(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: waits for a relay lease to expire")
	}
	out := filepath.Join(t.TempDir(), "results")
	args := []string{
		"--scenario", config.ScenarioRelayKill, "--relays", "3", "--modes", config.ModeRelay,
		"--services", "300", "--endpoints-per-service", "3", "--nodes", "6", "--services-per-node", "4",
		"--duration", "3s", "--churn-rate", "60", "--progress=false", "--plots=false", "--out", out,
	}
	var stdout, stderr bytes.Buffer
	if code := command(args, strings.NewReader(""), &stdout, &stderr); code != 0 {
		t.Fatalf("harness exited %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	sum, err := results.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if !sum.OK || len(sum.Modes) != 1 || !sum.Modes[0].GateOK {
		t.Fatalf("summary: ok %v, %d modes, errors %v", sum.OK, len(sum.Modes), sum.Errors)
	}
	m := sum.Modes[0]
	k := m.Details.RelayKill
	if k == nil || k.Victim == "" || len(k.VictimShards) == 0 || k.TakeoverSeconds <= 0 || len(k.Shards) != len(k.VictimShards) {
		t.Fatalf("relay kill: %+v", k)
	}
	for _, s := range k.Shards {
		if s.Leader == k.Victim || s.Seconds <= 0 || s.Seconds > k.TakeoverSeconds {
			t.Errorf("shard %d taken over by %q after %.2fs (victim %s, all after %.2fs)", s.Shard, s.Leader, s.Seconds, k.Victim, k.TakeoverSeconds)
		}
	}
	if k.BeforeLag == nil || k.FailoverLag == nil || k.RejoinLag == nil || k.FailoverLag.Samples == 0 ||
		k.BeforeLag.Samples+k.FailoverLag.Samples+k.RejoinLag.Samples > m.Lag.Samples {
		t.Errorf("window lags %+v, %+v, %+v against %d samples in all", k.BeforeLag, k.FailoverLag, k.RejoinLag, m.Lag.Samples)
	}
	if k.StreamsDuringFailover != 2 || m.Istiod.Streams != 3 || m.Istiod.StreamsTotal < 4 {
		t.Errorf("Istiod streams: %d during the failover, %d at the end, %d in total; want 2, 3, ≥ 4", k.StreamsDuringFailover, m.Istiod.Streams, m.Istiod.StreamsTotal)
	}
	if len(k.Replicas) != 3 {
		t.Fatalf("replicas %+v, want 3", k.Replicas)
	}
	held := map[int]bool{}
	var takeovers uint64
	for _, r := range k.Replicas {
		for _, s := range r.Held {
			held[s] = true
		}
		if r.ID != k.Victim {
			takeovers += r.Takeovers
		}
		if c := m.Components[r.ID]; c == nil || c.TotalCPU <= 0 {
			t.Errorf("%s: no CPU sampled: %+v", r.ID, c)
		}
	}
	if takeovers < uint64(len(k.VictimShards)) {
		t.Errorf("the survivors took %d shards over, fewer than the victim's %d", takeovers, len(k.VictimShards))
	}
	if len(held) != 16 {
		t.Errorf("replicas hold %d distinct shards at the end, want all 16: %+v", len(held), k.Replicas)
	}
	report, err := os.ReadFile(filepath.Join(out, "report.md"))
	if err != nil || !strings.Contains(string(report), "## Relay kill") || !strings.Contains(string(report), "| failover window |") {
		t.Errorf("report.md lacks the relay-kill section (%v)", err)
	}
}

func TestBadFlagExits2(t *testing.T) {
	for _, args := range [][]string{
		{"--scenario", "nope"},
		{"--zipf-s", "1"},
		{"--etcd-endpoints", "http://192.0.2.1:2379"},
		{"--modes", "both"},
		{"--relays", "0"},
		{"--relay-replicas", "9"},
		{"--xds-api", "delta"},
	} {
		var stdout, stderr bytes.Buffer
		if code := command(args, strings.NewReader(""), &stdout, &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", args, code, stderr.String())
		}
		if lines := strings.Count(strings.TrimSpace(stderr.String()), "\n"); lines != 0 {
			t.Errorf("%v: want one line, got %q", args, stderr.String())
		}
	}
}

package report

import (
	"cmp"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/meshrelay/meshrelay/scale-tests/internal/config"
	"github.com/meshrelay/meshrelay/scale-tests/internal/measure"
	"github.com/meshrelay/meshrelay/scale-tests/internal/results"
)

// apiText says which upstream xDS API the relay and the direct nodes
// consumed.
func apiText(api string) string {
	if api == config.APIWorkload {
		return "Upstream xDS API: **workload** (Istio's ambient workload API: istio.workload.Address over delta ADS; the relay runs `--mode workload`, each direct node is a ztunnel-like wildcard WDS consumer)."
	}
	return "Upstream xDS API: **sotw** (CDS, EDS, LDS and RDS over State-of-the-World ADS; the relay runs `--mode sotw`, each direct node is a Kmesh-ADS-like consumer)."
}

// Write writes report.md: the run's figures as tables, relay next to
// direct with their ratio, and the scale targets (Targets).
func Write(dir string, sum *results.Summary) error {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	c := sum.Config
	w("# meshrelay scale test: %s\n\n", c.Scenario)
	status := "passed"
	if !sum.OK {
		status = "FAILED"
	}
	w("Run %s, %s, %.0f s, %s.\n\n", sum.Name, sum.Started.Format("2006-01-02 15:04 MST"), sum.Seconds, status)
	w("```sh\n%s\n```\n\n", sum.Command)
	w("%s\n\n", apiText(c.API()))
	m := sum.Machine
	w("Machine: %s, %d cores, %.1f GiB, Linux %s, %s (%s). All components are processes on this machine, on loopback; each node pool is one process whose garbage collector is set to collect as often as its nodes would as separate processes (scale-tests/internal/roles/poolgc.go); etcd runs with the garbage collector settings docs/operations.md recommends at 1,000 nodes, a GOGC and a soft memory limit (scale-tests/internal/roles/etcd.go).\n\n",
		m.CPUModel, m.Cores, m.MemoryGiB, m.Kernel, m.GoVersion, m.OS)
	weights := "equal weights"
	if c.Weights {
		weights = "weights 1–10"
	}
	w("Mesh: %d services × %d endpoints (%d port(s) each, %s), %d namespaces; Istiod simulator debounce %v. ",
		c.Services, c.EndpointsPerService, c.PortsPerService, weights, c.Namespaces, c.Debounce)
	w("Workload: %d nodes × %d services drawn from Zipf(s=%.2f) (most used service on %d nodes, median used one on %d; %d services used at all), %s. ",
		c.Nodes, c.ServicesPerNode, c.ZipfS, sum.Workload.Max, sum.Workload.Median, sum.Workload.Used,
		map[bool]string{true: "discovered on demand", false: "declared up front"}[c.OnDemand])
	w("Scenario: %s. Relay replicas: %d. Direct nodes write %s services.\n\n", scenarioText(&c), c.RelayReplicas,
		map[string]string{"used": "only their node's", "all": "all"}[c.DirectScope])
	for _, e := range sum.Errors {
		w("**Error:** %s\n\n", strings.ReplaceAll(e, "\n", "\n    "))
	}

	relay, direct := modeOf(sum, config.ModeRelay), modeOf(sum, config.ModeDirect)
	for _, md := range sum.Modes {
		if md.Note != "" {
			w("Note (%s): %s.\n\n", md.Mode, md.Note)
		}
		if md.Skipped != "" {
			w("Note (%s): %s.\n\n", md.Mode, md.Skipped)
		}
	}

	w("## Per node, relay vs direct\n\n")
	w("Relay mode writes a change that arrives after quiet at once (the relay packs what arrives within 2 ms into one transaction, and so does the agent into one flush); the changes that follow within the relay's 100 ms window, or the agent's 20 ms flush window, are merged and written at the window's end, so a storm writes each service at most once per window. Direct nodes apply each push as soon as they have decoded it, and pay for it in CPU.\n\n")
	w("| | relay | direct | direct / relay |\n|---|---:|---:|---:|\n")
	row := func(name string, f func(*results.Mode) float64, format func(float64) string) {
		rv, dv := "–", "–"
		ratio := "–"
		var r, d float64
		if relay != nil {
			r = f(relay)
			rv = format(r)
		}
		if direct != nil {
			d = f(direct)
			dv = format(d)
		}
		if relay != nil && direct != nil && r > 0 && d > 0 {
			ratio = fmt.Sprintf("%.1f×", d/r)
		}
		w("| %s | %s | %s | %s |\n", name, rv, dv, ratio)
	}
	num := func(f string) func(float64) string { return func(v float64) string { return fmt.Sprintf(f, v) } }
	bytesFmt := func(v float64) string { return HumanBytes(v) }
	row("nodes simulated", func(m *results.Mode) float64 { return float64(m.Nodes) }, num("%.0f"))
	row("CPU per node during the scenario (s)", func(m *results.Mode) float64 { return m.PerNode.CPUSeconds }, num("%.3f"))
	row("CPU per node per endpoint change (ms)", func(m *results.Mode) float64 { return m.PerNode.CPUMsPerEvent }, num("%.4f"))
	row("share of the node pool's scenario CPU spent in garbage collection (%; one heap for all nodes)", func(m *results.Mode) float64 { return 100 * m.PerNode.GCShare }, num("%.0f"))
	row("bytes received per node during the scenario", func(m *results.Mode) float64 { return m.PerNode.BytesReceived }, bytesFmt)
	row("map entries written per node (updates + deletes)", func(m *results.Mode) float64 { return m.PerNode.MapUpdates + m.PerNode.MapDeletes }, num("%.1f"))
	row("map write syscalls per node", func(m *results.Mode) float64 { return m.PerNode.MapSyscalls }, num("%.1f"))
	row("datapath change sets written per node (flushes; relay mode also writes deferred deletes of unreferenced entries as their own)", func(m *results.Mode) float64 { return m.PerNode.Applies }, num("%.1f"))
	row("syscalls per change set", func(m *results.Mode) float64 { return m.PerNode.SyscallsPerApply }, num("%.2f"))
	row("push → map lag p50 (ms)", func(m *results.Mode) float64 { return m.Lag.P50Ms }, num("%.1f"))
	row("push → map lag p90 (ms)", func(m *results.Mode) float64 { return m.Lag.P90Ms }, num("%.1f"))
	row("push → map lag p99 (ms)", func(m *results.Mode) float64 { return m.Lag.P99Ms }, num("%.1f"))
	row("push → map lag max (ms)", func(m *results.Mode) float64 { return m.Lag.MaxMs }, num("%.1f"))
	row("last push → last map write of any node (s; 0: no node held what it changed)", func(m *results.Mode) float64 { return m.ConvergenceSeconds }, num("%.2f"))
	row("initial sync: CPU per node (s)", func(m *results.Mode) float64 { return m.PerNode.BootstrapCPUSeconds }, num("%.3f"))
	row("initial sync: bytes per node", func(m *results.Mode) float64 { return m.PerNode.BootstrapBytes }, bytesFmt)
	row("initial sync: time to all nodes in sync (s)", func(m *results.Mode) float64 { return m.NodesSyncSeconds }, num("%.2f"))
	row("initial sync: then until every component is quiet (s; its CPU counts as the sync's, not the scenario's)", func(m *results.Mode) float64 { return m.QuietSeconds }, num("%.1f"))
	row("map entries held per node", func(m *results.Mode) float64 { return m.PerNode.Entries }, num("%.0f"))
	row(memlockRowName(relay, direct), func(m *results.Mode) float64 { return m.PerNode.MemlockBytes }, bytesFmt)
	row("node pool RSS per node (max)", func(m *results.Mode) float64 { return m.PerNode.PoolRSS }, bytesFmt)
	w("\n")

	w("## Istiod and cluster totals\n\n| | relay | direct |\n|---|---:|---:|\n")
	irow := func(name string, f func(*results.Mode) string) {
		rv, dv := "–", "–"
		if relay != nil {
			rv = f(relay)
		}
		if direct != nil {
			dv = f(direct)
		}
		w("| %s | %s | %s |\n", name, rv, dv)
	}
	irow("streams open", func(m *results.Mode) string { return fmt.Sprint(m.Istiod.Streams) })
	irow("streams opened in total", func(m *results.Mode) string { return fmt.Sprint(m.Istiod.StreamsTotal) })
	irow("bytes sent (whole run)", func(m *results.Mode) string { return HumanBytes(float64(m.Istiod.BytesTotal)) })
	irow("bytes sent during the scenario", func(m *results.Mode) string { return HumanBytes(float64(m.Istiod.BytesScenario)) })
	if direct != nil && direct.Nodes < c.Nodes {
		irow(fmt.Sprintf("bytes sent (whole run) scaled to %d nodes", c.Nodes), func(m *results.Mode) string {
			if m.Mode == config.ModeRelay {
				return HumanBytes(float64(m.Istiod.BytesTotal))
			}
			return HumanBytes(float64(m.Istiod.BytesTotal) * float64(c.Nodes) / float64(m.Nodes))
		})
	}
	irow(fmt.Sprintf("CPU s during the scenario: nodes + relays + etcd, for %d nodes", c.Nodes), func(m *results.Mode) string {
		scale := float64(c.Nodes) / float64(m.Nodes)
		nodes := 0.0
		tier := 0.0
		for name, cr := range m.Components {
			switch {
			case name == results.CompNodes:
				nodes = cr.CPUSeconds * scale
			case name != results.CompSim:
				tier += cr.CPUSeconds
			}
		}
		if m.Mode == config.ModeRelay {
			return fmt.Sprintf("%.1f (nodes %.1f, relays + etcd %.1f)", nodes+tier, nodes, tier)
		}
		if scale != 1 {
			return fmt.Sprintf("%.1f (%d nodes measured × %.2f)", nodes, m.Nodes, scale)
		}
		return fmt.Sprintf("%.1f", nodes)
	})
	irow("CPU s of the Istiod simulator during the scenario (includes the harness's change recorder)", func(m *results.Mode) string {
		if cr := m.Components[results.CompSim]; cr != nil {
			return fmt.Sprintf("%.1f", cr.CPUSeconds)
		}
		return "–"
	})
	irow("responses / pushes", func(m *results.Mode) string { return fmt.Sprintf("%d / %d", m.Istiod.Responses, m.Istiod.Pushes) })
	irow("NACKs / protocol violations", func(m *results.Mode) string { return fmt.Sprintf("%d / %d", m.Istiod.Nacks, m.Istiod.Violations) })
	w("\n")

	w("## Components\n\nCPU seconds (user + system, /proc/<pid>/stat) during the scenario window and since start; largest resident memory (VmRSS) sampled every second.\n\n")
	w("| mode | component | CPU s (scenario) | CPU s (total) | max RSS |\n|---|---|---:|---:|---:|\n")
	for _, md := range sum.Modes {
		for _, name := range sortedKeys(md.Components) {
			cr := md.Components[name]
			w("| %s | %s | %.2f | %.2f | %s |\n", md.Mode, name, cr.CPUSeconds, cr.TotalCPU, HumanBytes(float64(cr.MaxRSS)))
		}
	}
	w("\n")

	w("## Events → writes\n\n")
	w("| mode | endpoint changes upstream | services pushed | etcd txns / puts / deletes | map entries written (all nodes) | map entries per node per change |\n|---|---:|---:|---:|---:|---:|\n")
	for _, md := range sum.Modes {
		if md.Skipped != "" {
			continue
		}
		wr := md.Writes
		etcd := "–"
		if md.Mode == config.ModeRelay {
			etcd = fmt.Sprintf("%d / %d / %d", wr.EtcdTxns, wr.EtcdPuts, wr.EtcdDeletes)
		}
		per := 0.0
		if wr.EndpointEvents > 0 {
			per = float64(wr.MapWrites) / float64(md.Nodes) / float64(wr.EndpointEvents)
		}
		w("| %s | %d | %d | %s | %d | %.4f |\n", md.Mode, wr.EndpointEvents, wr.ServiceChanges, etcd, wr.MapWrites, per)
	}
	w("\n")
	w("## Propagation lag by how many nodes hold the changed service\n\n| mode | nodes holding the service | (change, node) pairs | p50 ms | p99 ms | max ms |\n|---|---|---:|---:|---:|---:|\n")
	for _, md := range sum.Modes {
		for _, b := range md.Lag.ByHolders {
			rng := fmt.Sprintf("%d–%d", b.Min, b.Max)
			if b.Max >= 1<<30 {
				rng = fmt.Sprintf("≥ %d", b.Min)
			}
			w("| %s | %s | %d | %.1f | %.1f | %.1f |\n", md.Mode, rng, b.Samples, b.P50Ms, b.P99Ms, b.MaxMs)
		}
	}
	w("\n")
	if relay != nil {
		w("Lag samples (relay): %d of %d (change, node) pairs written as such (the others were superseded by a later change of the same service before being written: coalescing); %d writes matched no push.\n\n",
			relay.Lag.Samples, relay.Lag.Expected, relay.Lag.Unmatched)
	}
	if relay != nil && len(relay.Lag.Stages) > 0 {
		w("## Where the relay-mode lag goes, stage by stage\n\n")
		w("Each (change, node) pair's lag split at the relay's receipt of the push (observed_unix_nano), the relay's etcd transaction sent and answered (commit), the agent's watch response received (delivery) and the datapath write. The stages of one pair add up to its lag; their percentiles do not add up. Measured over %d of the %d pairs (the others lack a timestamp).\n\n",
			relay.Lag.StageSamples, relay.Lag.Samples)
		w("| stage | p50 ms | p99 ms | mean ms | max ms |\n|---|---:|---:|---:|---:|\n")
		for _, st := range relay.Lag.Stages {
			w("| %s | %.1f | %.1f | %.1f | %.1f |\n", st.Name, st.P50Ms, st.P99Ms, st.MeanMs, st.MaxMs)
		}
		w("| push → map (the lag, same pairs) | | | %.1f | |\n\n", stageMeanSum(relay.Lag.Stages))
		if len(relay.Lag.StagesByHolders) > 0 {
			w("By how many nodes hold the changed service (fan-out), p50 / p99 ms:\n\n| nodes holding the service | pairs |")
			for _, st := range relay.Lag.Stages {
				w(" %s |", st.Name)
			}
			w("\n|---|---:|%s\n", strings.Repeat("---:|", len(relay.Lag.Stages)))
			for _, b := range relay.Lag.StagesByHolders {
				rng := fmt.Sprintf("%d–%d", b.Min, b.Max)
				if b.Max >= 1<<30 {
					rng = fmt.Sprintf("≥ %d", b.Min)
				}
				w("| %s | %d |", rng, b.Samples)
				for _, st := range b.Stages {
					w(" %.1f / %.1f |", st.P50Ms, st.P99Ms)
				}
				w("\n")
			}
			w("\n")
		}
		if f := relay.Lag.Fanout; f != nil {
			w("%s\n\n", fanoutText(*f, sum.Machine.Cores))
		}
	}

	if relay != nil && relay.Etcd != nil {
		e := relay.Etcd
		w("## etcd (relay mode, at the end)\n\n")
		w("| DB size | DB in use | keys | watchers | watch streams | slow watchers | bytes sent to clients |\n|---:|---:|---:|---:|---:|---:|---:|\n")
		w("| %s | %s | %.0f | %.0f | %.0f | %.0f | %s |\n\n", HumanBytes(e.DBSize), HumanBytes(e.DBInUse), e.Keys, e.Watchers, e.WatchStreams, e.SlowWatchers, HumanBytes(e.SentBytes))
		if relay.RelaySyncSeconds > 0 {
			w("Relay initial sync (process start → all services and synced markers in etcd): %.2f s.\n\n", relay.RelaySyncSeconds)
		}
	}

	writeRecovery(&b, relay)

	var rec []string
	for _, md := range sum.Modes {
		figs := md.Details.Figures()
		slices.SortStableFunc(figs, func(a, b results.Figure) int { return strings.Compare(a.Name, b.Name) })
		for _, f := range figs {
			rec = append(rec, fmt.Sprintf("| %s | %s | %g |", md.Mode, f.Name, f.Value))
		}
	}
	if len(rec) > 0 {
		w("## Scenario details\n\n| mode | figure | value |\n|---|---|---:|\n%s\n\n", strings.Join(rec, "\n"))
	}

	w("## Targets (docs/targets.md)\n\n| target | measured | status | why |\n|---|---|---|---|\n")
	for _, t := range sum.Targets {
		w("| %s | %s | %s | %s |\n", t.Target, t.Measured, t.Status, t.Why)
	}
	w("\n## Correctness gate\n\n")
	for _, md := range sum.Modes {
		if md.Failed != "" && md.Gate.Mismatched == 0 {
			w("- %s: not judged: the mode failed before its final check (%s).\n", md.Mode, md.Failed)
			continue
		}
		if md.GateOK {
			w("- %s: all %d nodes hold exactly the simulator's truth for their services (frontends, backend sets, relative weights).\n", md.Mode, md.Gate.Nodes)
			continue
		}
		w("- %s: **%d of %d nodes differ**; first differences:\n", md.Mode, md.Gate.Mismatched, md.Gate.Nodes)
		for _, d := range md.Gate.Diffs {
			w("  - `%s`\n", d)
		}
	}
	if c.Plots {
		w("\n## Plots\n\n![lag CDF](%s)\n\n![CPU over time](%s)\n\n![memory vs services](%s)\n", PlotLag, PlotCPU, PlotMemory)
		if hasKernelMemlock(sum) {
			w("\n![map memory vs entries (kernel memlock)](%s)\n", PlotMemlock)
		}
	}
	w("\nLogs of every component are in `logs/`; every figure above is in `summary.json`.\n")
	return os.WriteFile(filepath.Join(dir, "report.md"), []byte(b.String()), 0o644)
}

// scenarioText describes the scenario with its parameters.
func scenarioText(c *config.Config) string {
	switch c.Scenario {
	case config.ScenarioSteady:
		return fmt.Sprintf("steady state, %.0f single-endpoint changes/s on random services for %v", c.ChurnRate, c.Duration)
	case config.ScenarioRolling:
		return fmt.Sprintf("rolling restart, %.0f endpoints/s replaced service after service (a service's endpoints all at once) for %v or until every service restarted", c.ChurnRate, c.Duration)
	case config.ScenarioNodeFailure:
		return fmt.Sprintf("node failure, %.0f %% of endpoints vanish, come back after %v", 100*c.FailFraction, c.Duration/2)
	case config.ScenarioScaleUp:
		return fmt.Sprintf("scale-up from %d to %d services in batches of %d over %v", c.InitialServices(), c.Services, c.ScaleBatch, c.Duration)
	case config.ScenarioIstiodRestart:
		return fmt.Sprintf("Istiod restart (new versions, same content), then %v of churn", config.LivenessChurn)
	case config.ScenarioRelayKill:
		return fmt.Sprintf("%.0f single-endpoint changes/s; a shard leader killed (SIGKILL) mid-churn, its shards taken over, then restarted", c.ChurnRate)
	case config.ScenarioEtcdWipe:
		return fmt.Sprintf("etcd killed and restarted empty, then %v of churn", config.LivenessChurn)
	}
	return c.Scenario
}

func modeOf(sum *results.Summary, mode string) *results.Mode {
	for _, m := range sum.Modes {
		if m.Mode == mode && m.Skipped == "" && m.Failed == "" {
			return m
		}
	}
	return nil
}

func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K {
	return slices.Sorted(maps.Keys(m))
}

// stageMeanSum is the sum of the stages' means: the mean lag of the pairs
// the stages were measured over.
func stageMeanSum(stages []measure.Stage) float64 {
	sum := 0.0
	for _, st := range stages {
		sum += st.MeanMs
	}
	return sum
}

// fanoutText describes the largest fan-out and the CPU it cost.
func fanoutText(f measure.Fanout, cores int) string {
	ms := func(from, to int64) float64 { return float64(to-from) / 1e6 }
	window := ms(f.Sent, f.Last)
	text := fmt.Sprintf("The largest fan-out: one change of %s (revision %d) reached %d nodes. From the relay sending its transaction, etcd answered it after %.1f ms; the first node received it after %.1f ms, the last after %.1f ms.",
		f.Service, f.Rev, f.Nodes, ms(f.Sent, f.Commit), ms(f.Sent, f.First), window)
	if len(f.CPUMs) == 0 || window <= 0 {
		return text
	}
	var parts []string
	for _, name := range f.Components() {
		parts = append(parts, fmt.Sprintf("%s %.0f ms", name, f.CPUMs[name]))
	}
	offered := window * float64(cores)
	share := fmt.Sprintf("%.0f %%", 100*f.TotalCPUMs()/offered)
	if f.TotalCPUMs() > offered {
		share += ", more than all of it within the readings' precision: the cores were busy throughout"
	}
	text += fmt.Sprintf(" CPU meanwhile (each process's /proc/<pid>/stat read every 5 ms, known to about 10 ms): %s; %.0f ms of the %.0f ms the machine's %d cores offer in that time (%s).",
		strings.Join(parts, ", "), f.TotalCPUMs(), offered, cores, share)
	if nodes, ok := f.CPUMs[results.CompNodes]; ok {
		text += fmt.Sprintf(" Per delivery: nodes %.0f µs", 1000*nodes/float64(f.Nodes))
		if e, ok := f.CPUMs[results.CompEtcd]; ok {
			text += fmt.Sprintf(", etcd %.0f µs", 1000*e/float64(f.Nodes))
		}
		text += "."
	}
	return text
}

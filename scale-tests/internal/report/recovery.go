package report

import (
	"fmt"
	"strings"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/scale-tests/internal/measure"
	"github.com/meshrelay/meshrelay/scale-tests/internal/results"
)

// writeRecovery writes the sections of the scenarios that break a
// component of relay mode: the relay-kill failover and the etcd-wipe
// rebuild. It writes nothing for the other scenarios.
func writeRecovery(b *strings.Builder, relay *results.Mode) {
	if relay == nil {
		return
	}
	w := func(format string, args ...any) { fmt.Fprintf(b, format, args...) }
	if k := relay.Details.RelayKill; k != nil {
		writeRelayKill(w, relay, k)
	}
	if e := relay.Details.EtcdWipe; e != nil {
		w("## etcd wipe: rebuild\n\n")
		w("etcd was killed, its data deleted and an empty one started at the same address. The relays rebuilt %d services (service, VIP and synced keys as many as before) %.2f s after it came back (%.2f s after the kill); etcd's generation is %s. From the kill until 2 s after the rebuild, the nodes removed %d datapath entries (%s) and wrote %d (updates and deletes). Load average at the rebuild: %s.\n\n",
			e.Services, e.EtcdRebuildSeconds, e.EtcdOutageSeconds, map[bool]string{true: "new", false: "**not new**"}[e.NewGeneration],
			e.MapDeletesDuringRecovery, byMapText(e.MapDeletesByMap), e.MapWritesDuringRecovery, loadText(e.LoadAverage))
	}
}

func writeRelayKill(w func(string, ...any), relay *results.Mode, k *results.RelayKill) {
	w("## Relay kill: shard failover\n\n")
	w("%s led %d of %d shards (%s) and was killed (SIGKILL, by PID) %.1f s into the churn; the replicas' lease TTL is %.0f s. Load average at the takeover: %s.\n\n",
		k.Victim, len(k.VictimShards), keyspace.DefaultShards, intsText(k.VictimShards), k.KillAfterSeconds, k.LeaseTTLSeconds, loadText(k.LoadAverage))
	takeover := seconds(k.TakeoverSeconds)
	w("| figure | value |\n|---|---:|\n")
	w("| takeover: kill → every shard of %s led by another replica (s) | %s |\n", k.Victim, takeover)
	w("| takeover complete: kill → every new leader wrote the synced marker of the shards it took (keys read, differences written) (s) | %s |\n", seconds(k.SyncedSeconds))
	w("| Istiod streams open during the failover / at the end / opened in total | %d / %d / %d |\n",
		k.StreamsDuringFailover, relay.Istiod.Streams, relay.Istiod.StreamsTotal)
	w("| %s restarted after the failover window → synced (s) | %.2f |\n", k.Victim, k.RelayResyncSeconds)
	w("| write operations refused by a shard's fence, all replicas, the whole scenario (a hand-off can refuse the writes in flight of the replica giving a shard up) | %d |\n\n", relay.Writes.EtcdFencedOps)

	if len(k.Shards) > 0 {
		w("| shard | led after the kill by | led after (s) | synced marker after (s) |\n|---:|---|---:|---:|\n")
		for _, s := range k.Shards {
			w("| %d | %s | %.2f | %s |\n", s.Shard, s.Leader, s.Seconds, seconds(s.SyncedSeconds))
		}
		w("\n")
	}

	w("Push → map lag of the changes pushed in each window of the churn: before the kill; the failover, from the kill to %.0f s after the takeover is complete (%.1f s; the changes of the victim's shards wait for the takeover, then for their new leader's resync); the rejoin, from the victim's restart (its shards handed back) to the end of the churn.\n\n",
		failoverTailSeconds(k), float64(k.FailoverTo-k.FailoverFrom)/1e9)
	w("| changes pushed | (change, node) pairs | p50 ms | p90 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|---:|\n")
	lagRow := func(name string, l *measure.Lag) {
		if l != nil {
			w("| %s | %d | %.1f | %.1f | %.1f | %.1f |\n", name, l.Samples, l.P50Ms, l.P90Ms, l.P99Ms, l.MaxMs)
		}
	}
	lagRow("whole scenario", &relay.Lag)
	lagRow("before the kill", k.BeforeLag)
	lagRow("failover window", k.FailoverLag)
	lagRow("rejoin", k.RejoinLag)
	w("\n")

	w("| replica | CPU s (scenario) | CPU s (total) | max RSS | shards held at the end | takeovers | fenced ops |\n|---|---:|---:|---:|---|---:|---:|\n")
	for _, r := range k.Replicas {
		cpu, total, rss := "–", "–", "–"
		if c := relay.Components[r.ID]; c != nil {
			cpu, total, rss = fmt.Sprintf("%.2f", c.CPUSeconds), fmt.Sprintf("%.2f", c.TotalCPU), HumanBytes(float64(c.MaxRSS))
		}
		w("| %s | %s | %s | %s | %s | %d | %d |\n", r.ID, cpu, total, rss, intsText(r.Held), r.Takeovers, r.FencedOps)
	}
	w("\nThe victim's figures add up its killed and its restarted process (CPU, takeovers and fenced ops summed; RSS the larger).\n\n")
}

// failoverTailSeconds is how long the failover window lasted after the
// takeover was complete.
func failoverTailSeconds(k *results.RelayKill) float64 {
	return float64(k.FailoverTo-k.FailoverFrom)/1e9 - k.SyncedSeconds
}

// seconds formats a duration of the failover, negative when it did not
// happen.
func seconds(s float64) string {
	switch {
	case s < 0:
		return "**not within 2 min**"
	case s == 0:
		return "–"
	}
	return fmt.Sprintf("%.2f", s)
}

func intsText(v []int) string {
	if len(v) == 0 {
		return "none"
	}
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ", ")
}

func byMapText(m map[string]uint64) string {
	if len(m) == 0 {
		return "not split by map"
	}
	var parts []string
	for _, name := range sortedKeys(m) {
		parts = append(parts, fmt.Sprintf("%s %d", name, m[name]))
	}
	return strings.Join(parts, ", ")
}

func loadText(l [3]float64) string {
	return fmt.Sprintf("%.2f / %.2f / %.2f (1 / 5 / 15 min)", l[0], l[1], l[2])
}

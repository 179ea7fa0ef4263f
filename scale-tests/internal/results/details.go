package results

import "github.com/meshrelay/meshrelay/scale-tests/internal/measure"

// Details are the scenario-specific figures of a mode. Each scenario sets
// its own part; Churn is also set after the scenarios that break a
// component, for the churn that shows changes flow again.
type Details struct {
	Churn         *Churn         `json:"churn,omitempty"`
	NodeFailure   *NodeFailure   `json:"nodeFailure,omitempty"`
	ScaleUp       *ScaleUp       `json:"scaleUp,omitempty"`
	IstiodRestart *IstiodRestart `json:"istiodRestart,omitempty"`
	RelayKill     *RelayKill     `json:"relayKill,omitempty"`
	EtcdWipe      *EtcdWipe      `json:"etcdWipe,omitempty"`
}

// Churn is what the simulator's churn changed.
type Churn struct {
	EndpointsChanged int `json:"endpointsChanged"`
	// Rolling is set for a rolling restart: ServicesRestarted services
	// had all their endpoints replaced; Complete says every service did.
	Rolling                bool `json:"rolling,omitempty"`
	ServicesRestarted      int  `json:"servicesRestarted,omitempty"`
	RollingRestartComplete bool `json:"rollingRestartComplete,omitempty"`
}

// NodeFailure is the node-failure scenario: a share of all endpoints
// vanished at once and came back later.
type NodeFailure struct {
	EndpointsRemoved int `json:"endpointsRemoved"`
	// FailureConvergenceSeconds is from the failure's push to the last
	// node's write.
	FailureConvergenceSeconds float64 `json:"failureConvergenceSeconds"`
	EndpointsRestored         int     `json:"endpointsRestored"`
}

// ScaleUp is the scale-up scenario: services added in batches.
type ScaleUp struct {
	ServicesAdded int `json:"servicesAdded"`
	Batches       int `json:"batches"`
}

// IstiodRestart is the Istiod-restart scenario: what an identical re-push
// cost.
type IstiodRestart struct {
	// ReconnectSeconds is from the restart until every client's stream was
	// back.
	ReconnectSeconds        float64 `json:"reconnectSeconds"`
	MapWritesAfterRestart   uint64  `json:"mapWritesAfterRestart"`
	IstiodBytesAfterRestart uint64  `json:"istiodBytesAfterRestart"`
	NodeCPUSecondsPerNode   float64 `json:"nodeCpuSecondsPerNodeAfterRestart"`
	// EtcdPutsAfterRestart is set in relay mode only.
	EtcdPutsAfterRestart *uint64 `json:"etcdPutsAfterRestart,omitempty"`
}

// RelayKill is the relay-kill scenario: during churn, the replica leading
// the most shards is killed (SIGKILL); the others take its shards over;
// it is started again once they have.
type RelayKill struct {
	// Victim is the replica killed and VictimShards the shards it led.
	Victim       string `json:"victim"`
	VictimShards []int  `json:"victimShards"`
	// LeaseTTLSeconds is the replicas' lease: the takeover waits for the
	// victim's to expire.
	LeaseTTLSeconds float64 `json:"leaseTtlSeconds"`
	// KillAfterSeconds is from the start of the churn to the kill.
	KillAfterSeconds float64 `json:"killAfterSeconds"`
	// TakeoverSeconds is from the kill until every shard of the victim
	// was led by another replica (-1: not within two minutes); Shards has
	// the time of each.
	TakeoverSeconds float64         `json:"takeoverSeconds"`
	Shards          []ShardTakeover `json:"shards"`
	// SyncedSeconds is from the kill until every new leader had written
	// the synced marker of the victim's shards it took (-1: not within
	// two minutes).
	SyncedSeconds float64 `json:"syncedSeconds"`
	// The churn is cut in three windows (Unix nanoseconds): before the
	// kill (ChurnFrom to FailoverFrom, the kill), the failover
	// (FailoverFrom to FailoverTo, the synced markers plus a few seconds) and
	// the rejoin (FailoverTo to ChurnTo: the victim restarted, shards
	// handed back to it). Each Lag is the push → map lag of the changes
	// pushed in its window.
	ChurnFrom    int64        `json:"churnFrom"`
	FailoverFrom int64        `json:"failoverFrom"`
	FailoverTo   int64        `json:"failoverTo"`
	ChurnTo      int64        `json:"churnTo"`
	BeforeLag    *measure.Lag `json:"beforeLag,omitempty"`
	FailoverLag  *measure.Lag `json:"failoverLag,omitempty"`
	RejoinLag    *measure.Lag `json:"rejoinLag,omitempty"`
	// StreamsDuringFailover are the Istiod streams open after the
	// takeover, before the victim is started again.
	StreamsDuringFailover int `json:"streamsDuringFailover"`
	// RelayResyncSeconds is from the victim's restart to its new
	// process's first complete sync.
	RelayResyncSeconds float64 `json:"relayResyncSeconds"`
	// Replicas are every replica's shard counters at the end.
	Replicas []ReplicaShards `json:"replicas"`
	// LoadAverage is the machine's 1/5/15 min load average at the
	// takeover (the machine may be shared).
	LoadAverage [3]float64 `json:"loadAverage"`
}

// ShardTakeover is one shard of a killed leader taken over.
type ShardTakeover struct {
	Shard int `json:"shard"`
	// Leader is the relay id leading it after the takeover.
	Leader string `json:"leader"`
	// Seconds is from the kill until it was seen led by Leader;
	// SyncedSeconds until Leader had written its synced marker (keys
	// read, differences written), 0 if not seen.
	Seconds       float64 `json:"seconds"`
	SyncedSeconds float64 `json:"syncedSeconds"`
}

// ReplicaShards is one relay replica's shard counters.
type ReplicaShards struct {
	ID string `json:"id"`
	// Held are the shards it writes.
	Held []int `json:"held"`
	// Takeovers and FencedOps count its shard takeovers and its write
	// operations a shard's fence refused (killed and restarted processes
	// summed).
	Takeovers uint64 `json:"takeovers"`
	FencedOps uint64 `json:"fencedOps"`
}

// EtcdWipe is the etcd-wipe scenario: etcd killed and restarted empty.
type EtcdWipe struct {
	// EtcdRebuildSeconds is from the new etcd's start until it held as
	// many keys as before; EtcdOutageSeconds from the kill.
	EtcdRebuildSeconds       float64 `json:"etcdRebuildSeconds"`
	EtcdOutageSeconds        float64 `json:"etcdOutageSeconds"`
	MapDeletesDuringRecovery uint64  `json:"mapDeletesDuringRecovery"`
	MapWritesDuringRecovery  uint64  `json:"mapWritesDuringRecovery"`
	// MapDeletesByMap splits MapDeletesDuringRecovery by map (frontends,
	// slots, backends).
	MapDeletesByMap map[string]uint64 `json:"mapDeletesByMap,omitempty"`
	// Services is how many services etcd held again; LoadAverage the
	// machine's 1/5/15 min load average at the rebuild's end.
	Services    int        `json:"services"`
	LoadAverage [3]float64 `json:"loadAverage"`
	// NewGeneration is true when etcd's generation key was back, with a
	// value other than before the wipe, once the data was.
	NewGeneration bool `json:"newGeneration"`
}

// Figure is one named scenario figure, a row of the report.
type Figure struct {
	Name  string
	Value float64
}

// Figures lists the details that are set, as report rows.
func (d Details) Figures() []Figure {
	var out []Figure
	add := func(name string, v float64) { out = append(out, Figure{name, v}) }
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	if c := d.Churn; c != nil {
		add("endpointsChanged", float64(c.EndpointsChanged))
		if c.Rolling {
			add("servicesRestarted", float64(c.ServicesRestarted))
			add("rollingRestartComplete", b(c.RollingRestartComplete))
		}
	}
	if f := d.NodeFailure; f != nil {
		add("endpointsRemoved", float64(f.EndpointsRemoved))
		add("failureConvergenceSeconds", f.FailureConvergenceSeconds)
		add("endpointsRestored", float64(f.EndpointsRestored))
	}
	if s := d.ScaleUp; s != nil {
		add("servicesAdded", float64(s.ServicesAdded))
		add("batches", float64(s.Batches))
	}
	if r := d.IstiodRestart; r != nil {
		add("reconnectSeconds", r.ReconnectSeconds)
		add("mapWritesAfterRestart", float64(r.MapWritesAfterRestart))
		add("istiodBytesAfterRestart", float64(r.IstiodBytesAfterRestart))
		add("nodeCPUSecondsPerNodeAfterRestart", r.NodeCPUSecondsPerNode)
		if r.EtcdPutsAfterRestart != nil {
			add("etcdPutsAfterRestart", float64(*r.EtcdPutsAfterRestart))
		}
	}
	if k := d.RelayKill; k != nil {
		add("relayResyncSeconds", k.RelayResyncSeconds)
		add("takeoverSeconds", k.TakeoverSeconds)
		add("takeoverSyncedSeconds", k.SyncedSeconds)
		add("streamsDuringFailover", float64(k.StreamsDuringFailover))
	}
	if w := d.EtcdWipe; w != nil {
		add("etcdRebuildSeconds", w.EtcdRebuildSeconds)
		add("etcdOutageSeconds", w.EtcdOutageSeconds)
		add("mapDeletesDuringRecovery", float64(w.MapDeletesDuringRecovery))
		add("mapWritesDuringRecovery", float64(w.MapWritesDuringRecovery))
		add("newGeneration", b(w.NewGeneration))
	}
	return out
}

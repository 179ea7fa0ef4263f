package results

import (
	"github.com/meshrelay/meshrelay/scale-tests/internal/gate"
	"github.com/meshrelay/meshrelay/scale-tests/internal/measure"
)

// Mode is what one mode measured.
type Mode struct {
	Mode  string `json:"mode"`
	Nodes int    `json:"nodes"`
	// Skipped says why the scenario was not run in this mode.
	Skipped string `json:"skipped,omitempty"`
	// Note explains deviations (e.g. fewer direct nodes than asked).
	Note string `json:"note,omitempty"`
	// Failed is set when the mode did not complete (its figures are
	// partial and no target is judged on them).
	Failed string `json:"failed,omitempty"`

	// Bootstrap: relay's first complete sync into etcd, and the nodes'
	// first complete datapath (from pool start to a passing gate).
	RelaySyncSeconds float64 `json:"relaySyncSeconds,omitempty"`
	NodesSyncSeconds float64 `json:"nodesSyncSeconds"`
	// QuietSeconds is how long the components kept working after the
	// nodes were in sync (etcd syncing the watches created behind its
	// head, garbage collection), before the scenario started; their CPU
	// then counts as the initial sync's.
	QuietSeconds float64 `json:"quietSeconds,omitempty"`

	// Scenario window: from its first change to convergence.
	ScenarioSeconds    float64 `json:"scenarioSeconds"`
	ConvergenceSeconds float64 `json:"convergenceSeconds"`
	// Details holds the scenario's own figures (e.g. etcd rebuild time).
	Details Details `json:"details"`

	Components map[string]*Component `json:"components"`
	Istiod     Istiod                `json:"istiod"`
	PerNode    PerNode               `json:"perNode"`
	Writes     Writes                `json:"writes"`
	Lag        measure.Lag           `json:"lag"`
	Etcd       *measure.EtcdMetrics  `json:"etcd,omitempty"`
	Gate       gate.Result           `json:"gate"`
	GateOK     bool                  `json:"gateOK"`
	// Agents (relay mode) or Direct (direct mode) are the node pool's own
	// counters at the end.
	Agents *AgentTotals  `json:"agents,omitempty"`
	Direct *DirectTotals `json:"direct,omitempty"`

	// Series are the per-second readings of every component, for plots.
	Series map[string][]measure.SamplePoint `json:"series,omitempty"`
	// ScenarioStart is the scenario's start in the series' time base.
	ScenarioStart float64 `json:"scenarioStart"`
}

// Component is one component's resource use.
type Component struct {
	// CPUSeconds is the CPU used during the scenario window; TotalCPU
	// since the process started (bootstrap included).
	CPUSeconds float64 `json:"cpuSeconds"`
	TotalCPU   float64 `json:"totalCpuSeconds"`
	MaxRSS     int64   `json:"maxRssBytes"`
}

// Istiod is what the simulated Istiod served.
type Istiod struct {
	// Streams is the number of xDS streams open at the end; StreamsTotal
	// those opened since it started.
	Streams      int    `json:"streams"`
	StreamsTotal uint64 `json:"streamsTotal"`
	// DeltaStreams are the delta (workload API) streams among Streams.
	DeltaStreams int `json:"deltaStreams"`
	// BytesScenario were sent during the scenario window, BytesTotal
	// since start (initial sync included).
	BytesScenario uint64 `json:"bytesScenario"`
	BytesTotal    uint64 `json:"bytesTotal"`
	Responses     uint64 `json:"responses"`
	Pushes        uint64 `json:"pushes"`
	Nacks         int    `json:"nacks"`
	Violations    int    `json:"violations"`
}

// PerNode averages the node pool's work over its nodes, for the
// scenario window.
type PerNode struct {
	CPUSeconds    float64 `json:"cpuSeconds"`
	BytesReceived float64 `json:"bytesReceived"`
	MapUpdates    float64 `json:"mapUpdates"`
	MapDeletes    float64 `json:"mapDeletes"`
	MapSyscalls   float64 `json:"mapSyscalls"`
	Applies       float64 `json:"applies"`
	// SyscallsPerApply is map syscalls per non-empty apply (a flush).
	SyscallsPerApply float64 `json:"syscallsPerApply"`
	// MaxSyscallsPerMapPerApply is the most syscalls one map took in one
	// apply, over the whole scenario.
	MaxSyscallsPerMapPerApply int `json:"maxSyscallsPerMapPerApply"`
	// CPUMsPerEvent is CPU milliseconds per upstream endpoint change.
	CPUMsPerEvent float64 `json:"cpuMsPerEvent"`
	// Bootstrap: CPU seconds and bytes per node for the initial sync.
	BootstrapCPUSeconds float64 `json:"bootstrapCpuSeconds"`
	BootstrapBytes      float64 `json:"bootstrapBytes"`
	// Memory: entries held and map memory at the end. MemlockBytes is
	// the kernel's memlock when MemlockSource is MemlockKernel (the mean
	// of MemlockNodes), the model's otherwise (see memlock.go).
	Entries       float64       `json:"entries"`
	MemlockBytes  float64       `json:"memlockBytes"`
	MemlockSource string        `json:"memlockSource,omitempty"`
	MemlockNodes  []NodeMemlock `json:"memlockNodes,omitempty"`
	// MemlockNote says why the kernel figure is missing.
	MemlockNote string `json:"memlockNote,omitempty"`
	// PoolRSS is the node pool's largest RSS divided by its nodes.
	PoolRSS float64 `json:"poolRssBytes"`
	// GCShare is the share of the node pool's CPU in the scenario window
	// that its garbage collector spent (one heap for every node).
	GCShare float64 `json:"gcShare"`
}

// Writes follows one scenario's changes through the tiers.
type Writes struct {
	// EndpointEvents are endpoint additions and removals upstream;
	// ServiceChanges the services pushed (summed over pushes).
	EndpointEvents int   `json:"endpointEvents"`
	ServiceChanges int64 `json:"serviceChanges"`
	// Etcd: what the relays wrote (all replicas).
	EtcdTxns    uint64 `json:"etcdTxns"`
	EtcdPuts    uint64 `json:"etcdPuts"`
	EtcdDeletes uint64 `json:"etcdDeletes"`
	// MapWrites are map entries written or deleted, all nodes.
	MapWrites uint64 `json:"mapWrites"`

	// EtcdFencedOps are the relays' write operations a shard's fence
	// refused (all replicas): none without a hand-off or a paused leader.
	EtcdFencedOps uint64 `json:"etcdFencedOps"`
}

// Names of the components of a mode, the keys of Mode.Components and
// Mode.Series (with relay-<i> for each relay replica).
const (
	CompSim   = "sim"
	CompEtcd  = "etcd"
	CompNodes = "nodes"
)

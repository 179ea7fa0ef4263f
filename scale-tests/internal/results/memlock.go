package results

// Memlock sources of PerNode.MemlockBytes.
const (
	// MemlockKernel: the mean kernel memlock (MapInfo.Memlock, every map
	// of the layout) of a sample of nodes whose datapath states were
	// replayed into real BPF maps at the end of the phase.
	MemlockKernel = "kernel"
	// MemlockModel: the memory datapath's model of the three
	// agent-written maps, used when the kernel figure could not be taken
	// (not root, no bpffs).
	MemlockModel = "model"
)

// NodeMemlock is one replayed node: the entries it held and the kernel
// memlock of its maps.
type NodeMemlock struct {
	Node         string `json:"node"`
	Entries      int    `json:"entries"`
	MemlockBytes uint64 `json:"memlockBytes"`
}

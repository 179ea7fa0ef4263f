package datapath

import (
	"context"
	"errors"
	"net/netip"
)

// Datapath holds the agent-written maps (frontends, slots, backends).
// Implementations: BPF (kernel maps) and Memory (Go maps); tests wrap
// them in the fakes of internal/testsupport/dpfake. All methods are safe
// for concurrent use; Apply calls are serialised.
type Datapath interface {
	// Apply writes cs in ChangeSet's make-before-break order, in batches
	// of at most the configured batch size per map. It is idempotent:
	// upserting an existing entry and deleting a missing one succeed, so
	// after an error the caller re-diffs (Dump + DiffStates) or re-applies
	// the same change set. The ApplyStats count what was written even when
	// it returns an error. ctx is checked between batches.
	Apply(ctx context.Context, cs ChangeSet) (ApplyStats, error)
	// Dump reads the three maps back (BPF_MAP_LOOKUP_BATCH when the kernel
	// has it). After a restart the agent diffs its wanted state against
	// the dump, so an unchanged restart writes nothing.
	Dump(ctx context.Context) (State, error)
	// Stats returns per-map counters since the datapath was opened.
	Stats() Stats
	// Attach makes cidrs the service CIDRs in which connects to unknown
	// addresses are reported as misses, and installs the socket programs
	// that read the maps once. It is idempotent: later calls update the
	// CIDRs and return the same Programs. Memory has no programs and
	// returns nil; the Programs are closed by Close.
	Attach(ctx context.Context, cidrs []netip.Prefix) (*Programs, error)
	// Close releases the datapath's resources. BPF keeps its pinned maps
	// (and the kernel keeps translating with them).
	Close() error
}

// ApplyStats counts the work of one Apply.
type ApplyStats struct {
	Updates  int // entries upserted
	Deletes  int // entries deleted (a delete of a missing key is not counted)
	Syscalls int // map write syscalls (batched or single)
	Batches  int // batched syscalls among Syscalls
}

// Add returns the sum of s and o.
func (s ApplyStats) Add(o ApplyStats) ApplyStats {
	return ApplyStats{
		Updates:  s.Updates + o.Updates,
		Deletes:  s.Deletes + o.Deletes,
		Syscalls: s.Syscalls + o.Syscalls,
		Batches:  s.Batches + o.Batches,
	}
}

// Stats describes a datapath's maps.
type Stats struct {
	Maps []MapStats
}

// Map returns the stats of the map called name (zero if there is none).
func (s Stats) Map(name string) MapStats {
	for _, m := range s.Maps {
		if m.Name == name {
			return m
		}
	}
	return MapStats{}
}

// MapStats describes one map. Updates, Deletes, Syscalls and Batches
// count Apply's writes and are identical for BPF and Memory given the same
// change sets and options. ReadSyscalls counts Dump's lookups (for Memory:
// what BPF would need at best, ceil((n+1)/batch)).
type MapStats struct {
	Name    string
	Entries int // current number of entries; -1 if unknown (kernel-written maps are not counted)
	// MaxEntries is the map's current capacity. The agent-written maps
	// grow and shrink with their entries (see resize.go) up to Limit, the
	// configured MaxEntries; for the other maps Limit equals MaxEntries.
	MaxEntries   int
	Limit        int
	Flags        uint32 // map flags (BPF_F_NO_PREALLOC = 1)
	Updates      uint64
	Deletes      uint64
	Syscalls     uint64
	Batches      uint64
	ReadSyscalls uint64
	// MemlockBytes is the kernel's memlock figure for the map
	// (MapInfo.Memlock, accurate for hash maps on Linux >= 6.4); Memory
	// models it with the kernel's formula for BPF_F_NO_PREALLOC hash maps.
	MemlockBytes uint64
	// Resizes counts the times the map was replaced by a larger or smaller
	// one, CopySyscalls the batch lookups and updates those copies made
	// (not part of Syscalls or ReadSyscalls).
	Resizes      uint64
	CopySyscalls uint64
}

// Names of the agent-written maps, as in meshrelay.c and MapStats.Name.
const (
	MapFrontends = "frontends"
	MapSlots     = "slots"
	MapBackends  = "backends"
)

var errClosed = errors.New("datapath closed")

// ErrMapFull is returned (wrapped) when an upsert does not fit in a map's
// MaxEntries.
var ErrMapFull = errors.New("map full")

// MaxEntries sizes the maps. Zero fields take the defaults below.
//
// The agent-written maps (Frontends, Slots, Backends) start small and grow
// and shrink with what they hold (see resize.go); their field is the most
// they grow to, not memory reserved.
type MaxEntries struct {
	Frontends int // default 1,048,576
	Slots     int // default 16,777,216
	Backends  int // default 4,194,304

	// Kernel-written and CIDR maps; BPF only.
	// The LRU maps are preallocated by the kernel (about 120, 80 and 88
	// bytes an entry). rev_nat (starting at 2,048 entries) and usage
	// (1,024) grow and shrink with the entries used recently (lru.go);
	// RevNAT and Usage are the most they grow to. MissLimit is a fixed
	// size. The initial sizes keep a node of 10 services under 1 MiB of
	// memlock in all (README Performance).
	RevNAT       int // default 1,048,576 (LRU, preallocated, resizable)
	Usage        int // default 1,048,576 (LRU, preallocated, resizable)
	MissLimit    int // default 256 (LRU, preallocated)
	ServiceCIDRs int // default 64
	MissReports  int // ring buffer bytes, power of 2 pages; default 16,384
}

// Default map sizes.
const (
	DefaultMaxFrontends    = 1 << 20
	DefaultMaxSlots        = 1 << 24
	DefaultMaxBackends     = 1 << 22
	DefaultMaxRevNAT       = 1 << 20
	DefaultMaxUsage        = 1 << 20
	DefaultMaxMissLimit    = 256
	DefaultMaxServiceCIDRs = 64
	DefaultMissReportBytes = 16384
)

// DefaultBatchSize is the number of entries per batch syscall.
const DefaultBatchSize = 4096

func (m MaxEntries) withDefaults() MaxEntries {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&m.Frontends, DefaultMaxFrontends)
	def(&m.Slots, DefaultMaxSlots)
	def(&m.Backends, DefaultMaxBackends)
	def(&m.RevNAT, DefaultMaxRevNAT)
	def(&m.Usage, DefaultMaxUsage)
	def(&m.MissLimit, DefaultMaxMissLimit)
	def(&m.ServiceCIDRs, DefaultMaxServiceCIDRs)
	def(&m.MissReports, DefaultMissReportBytes)
	return m
}

// byName returns the size of the map called name.
func (m MaxEntries) byName(name string) int {
	switch name {
	case MapFrontends:
		return m.Frontends
	case MapSlots:
		return m.Slots
	case MapBackends:
		return m.Backends
	case "rev_nat":
		return m.RevNAT
	case "usage":
		return m.Usage
	case "miss_limit":
		return m.MissLimit
	case "service_cidrs":
		return m.ServiceCIDRs
	case "miss_reports":
		return m.MissReports
	case "miss_drops":
		return 1 // one counter
	}
	return 0
}

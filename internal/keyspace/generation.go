package keyspace

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
)

// NewGeneration returns a fresh random generation id: the plain-text value
// of the generation key, created by the relay that first finds etcd
// without one.
func NewGeneration() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Incarnation detects that the etcd behind a client was wiped, replaced or
// restored (docs/contract.md, "generation"). It remembers the generation key
// last observed and the highest etcd revision seen, and reports a rebuild
// when the generation key changed (deleted, replaced, or created) or etcd's
// revision went backwards - a watch cannot see an etcd replaced by an empty
// one, whose revisions start over below the watch's.
//
// Incarnation is pure and not safe for concurrent use: its owner guards it.
// The zero value knows nothing; its first Observe sets the baseline.
type Incarnation struct {
	known      bool
	generation string
	present    bool
	revision   int64
}

// Observe records one read of the generation key - its value, whether it
// exists, and the etcd revision of the read (0 when unknown) - and reports
// whether etcd was rebuilt since the previous observation, and why. The
// observation becomes the new baseline either way.
func (in *Incarnation) Observe(generation string, present bool, revision int64) (rebuilt bool, reason string) {
	if !present {
		generation = ""
	}
	rebuilt, reason = in.Differs(generation, present, revision)
	if rebuilt || !in.known {
		in.known, in.generation, in.present, in.revision = true, generation, present, revision
		return rebuilt, reason
	}
	in.revision = max(in.revision, revision)
	return false, ""
}

// Differs reports what Observe would, without recording anything.
func (in *Incarnation) Differs(generation string, present bool, revision int64) (rebuilt bool, reason string) {
	if !in.known {
		return false, ""
	}
	if !present {
		generation = ""
	}
	switch {
	case in.present && !present:
		return true, "generation key missing"
	case !in.present && present:
		return true, "generation key created"
	case generation != in.generation:
		return true, "generation key replaced"
	case in.Backwards(revision):
		return true, fmt.Sprintf("etcd revision went backwards from %d to %d", in.revision, revision)
	}
	return false, ""
}

// Backwards reports whether revision is below the highest revision seen:
// etcd was replaced by an empty one or restored from an older copy.
func (in *Incarnation) Backwards(revision int64) bool {
	return in.known && revision > 0 && revision < in.revision
}

// Advance raises the highest revision seen (e.g. from a watch event),
// without reading the generation key.
func (in *Incarnation) Advance(revision int64) {
	in.revision = max(in.revision, revision)
}

// Generation returns the generation last observed; ok is false when the
// key was absent or nothing was observed yet.
func (in *Incarnation) Generation() (id string, ok bool) {
	return in.generation, in.known && in.present
}

// Known reports whether anything was observed since the zero value or Reset.
func (in *Incarnation) Known() bool { return in.known }

// Revision is the highest etcd revision seen.
func (in *Incarnation) Revision() int64 { return in.revision }

// Reset forgets everything: the next Observe sets a new baseline. Called
// after reloading from a rebuilt etcd.
func (in *Incarnation) Reset() { *in = Incarnation{} }

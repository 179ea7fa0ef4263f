package shard

import (
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Leader is one term of this replica's leadership of one shard.
type Leader struct {
	// Shard is the shard led.
	Shard int
	// Key is this replica's election key, shards/<shard>/<lease hex>.
	Key string
	// Revision is the create revision of Key: it names the term.
	Revision int64
	// Since is when the term began.
	Since time.Time

	done chan struct{}
}

// Done is closed when the term ends: resigned, deposed (a write refused by
// the fence), or the session's lease lost.
func (l *Leader) Done() <-chan struct{} { return l.done }

// Fence is the comparison that holds only during this term: the election
// key still exists with the create revision it had when elected. A write
// transaction carrying it cannot land once another replica leads.
func (l *Leader) Fence() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(l.Key), "=", l.Revision)
}

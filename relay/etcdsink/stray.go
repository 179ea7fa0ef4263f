package etcdsink

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// strayLogged bounds the stray keys logged one by one per sweep; the rest
// are counted.
const strayLogged = 20

// deleteStray deletes the keys under services/, authorizations/ and
// synced/ that the last
// load found not canonical (docs/contract.md, "Strict parsing"): stray,
// aliased (endpoints/010) or out of range. It runs with the sweep after a
// complete upstream sync, MaxTxnOps keys per transaction.
func (s *Sink) deleteStray(ctx context.Context) error {
	for len(s.stray) > 0 {
		n := min(len(s.stray), s.opts.MaxTxnOps)
		batch := s.stray[:n]
		ops := make([]clientv3.Op, n)
		bytes := 0
		for i, key := range batch {
			ops[i] = clientv3.OpDelete(key)
			bytes += len(key) + opOverhead
		}
		// Stray keys are garbage whatever shard they name: any replica
		// may delete them, unfenced (a delete of a missing key is a no-op).
		if err := s.commit(ctx, ops, bytes, -1); err != nil {
			return fmt.Errorf("delete stray keys: %w", err)
		}
		for i, key := range batch {
			if s.strayDeleted+i < strayLogged {
				s.log.Warn("deleted a key that is not a canonical meshrelay key", "key", key)
			}
		}
		s.strayDeleted += n
		s.metrics.deletes.Add(float64(n))
		s.stray = s.stray[n:]
		if len(s.stray) == 0 {
			s.log.Warn("stray keys deleted", "keys", s.strayDeleted)
		}
	}
	return nil
}

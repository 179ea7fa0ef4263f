package etcdsink

import (
	"context"
	"fmt"
	"strings"

	"github.com/cespare/xxhash/v2"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
)

// writtenService is what etcd holds for one service, as far as the Sink
// knows: content hashes, not values.
type writtenService struct {
	specHash string // "" when etcd has no spec
	// slices maps the index of every endpoints/<i> key etcd holds to
	// its content hash. A map, not a slice: an index read from etcd
	// sizes nothing.
	slices   map[int]string
	revision uint64   // highest revision among its values
	vips     []string // VIP index entries pointing at this service
	// gen is the slice generation the spec names: slices holds the
	// hashes of that generation's keys.
	gen uint32
	// stale are slice keys of other generations (an interrupted staged
	// write, or old slices not deleted yet); staleGen is their highest
	// generation, so a new generation never reuses one of them.
	stale    []string
	staleGen uint32
	// byGen collects slice hashes by generation while loading.
	byGen map[uint32]map[int]string
}

// loaded is etcd's state read by load.
type loaded struct {
	generation string // "" when absent
	rev        int64  // etcd revision of the load
	written    map[keyspace.Service]*writtenService
	vipOwner   map[string]keyspace.Service
	markers    map[int]keyspace.Marker
	// authz are the content hashes of the authorization policy values.
	authz map[keyspace.Authorization]uint64
	keys  int // keys under services/, vips/ and authorizations/
	// stray are keys under services/, authorizations/ and synced/ that do
	// not parse canonically: deleted by the next sweep.
	stray []string
}

// loadPageSize is the number of keys per range request when loading.
const loadPageSize = 1000

// load reads the generation, every service value, the VIP index, the
// authorization policies and the synced markers, all at one revision.
func (s *Sink) load(ctx context.Context) (*loaded, error) {
	st := &loaded{
		written:  make(map[keyspace.Service]*writtenService),
		vipOwner: make(map[string]keyspace.Service),
		markers:  make(map[int]keyspace.Marker),
		authz:    make(map[keyspace.Authorization]uint64),
	}
	rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
	resp, err := s.client.Get(rctx, s.space.Generation())
	cancel()
	if err != nil {
		return nil, fmt.Errorf("get %s: %w", s.space.Generation(), err)
	}
	if len(resp.Kvs) > 0 {
		st.generation = string(resp.Kvs[0].Value)
	}
	rev := resp.Header.Revision
	st.rev = rev

	err = s.rangePrefix(ctx, s.space.ServicesPrefix(), rev, func(key string, value []byte) {
		st.keys++
		k, ok := s.space.ParseServiceKey(key)
		if !ok {
			st.stray = append(st.stray, key) // O(1): nothing sized by the key
			return
		}
		w := st.service(k.Service)
		switch k.Kind {
		case keyspace.KindSpec:
			spec, err := model.DecodeSpec(value)
			if err != nil {
				s.log.Warn("undecodable value: will rewrite it", "key", key, "err", err)
				return
			}
			w.specHash = spec.GetContentHash()
			w.gen = spec.GetSliceGeneration()
			w.revision = max(w.revision, spec.GetRevision())
		case keyspace.KindSlice:
			if w.byGen == nil {
				w.byGen = make(map[uint32]map[int]string)
			}
			hashes := w.byGen[k.Gen]
			if hashes == nil {
				hashes = make(map[int]string)
				w.byGen[k.Gen] = hashes
			}
			sl, err := model.DecodeSlice(value)
			if err != nil {
				s.log.Warn("undecodable value: will rewrite it", "key", key, "err", err)
				// Keep a placeholder so that the key is overwritten
				// or deleted.
				hashes[k.Slice] = "undecodable"
				return
			}
			hashes[k.Slice] = sl.GetContentHash()
			w.revision = max(w.revision, sl.GetRevision())
		}
	})
	if err != nil {
		return nil, err
	}
	for svc, w := range st.written {
		for gen, hashes := range w.byGen {
			if gen == w.gen {
				w.slices = hashes
				continue
			}
			for i := range hashes {
				w.stale = append(w.stale, s.space.SliceOf(svc, gen, i))
			}
			w.staleGen = max(w.staleGen, gen)
		}
		w.byGen = nil
	}

	err = s.rangePrefix(ctx, s.space.VIPsPrefix(), rev, func(key string, value []byte) {
		st.keys++
		ip := strings.TrimPrefix(key, s.space.VIPsPrefix())
		svc, err := keyspace.ParseService(string(value))
		if err != nil {
			s.log.Warn("bad VIP index entry: ignoring it", "key", key, "err", err)
			return
		}
		st.vipOwner[ip] = svc
		w := st.service(svc)
		w.vips = append(w.vips, ip)
	})
	if err != nil {
		return nil, err
	}

	err = s.rangePrefix(ctx, s.space.AuthorizationsPrefix(), rev, func(key string, value []byte) {
		st.keys++
		a, ok := s.space.ParseAuthorizationKey(key)
		if !ok {
			st.stray = append(st.stray, key)
			return
		}
		st.authz[a] = xxhash.Sum64(value)
	})
	if err != nil {
		return nil, err
	}

	err = s.rangePrefix(ctx, s.space.SyncedPrefix(), rev, func(key string, value []byte) {
		shard, ok := s.space.ParseSynced(key)
		if !ok {
			st.stray = append(st.stray, key)
			return
		}
		m, err := keyspace.ParseMarker(value)
		if err != nil {
			s.log.Warn("bad synced marker: will rewrite it", "key", key, "err", err)
			return
		}
		st.markers[shard] = m
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

func (st *loaded) service(svc keyspace.Service) *writtenService {
	w := st.written[svc]
	if w == nil {
		w = &writtenService{}
		st.written[svc] = w
	}
	return w
}

// rangePrefix calls fn for every key under prefix at revision rev, reading
// loadPageSize keys per request.
func (s *Sink) rangePrefix(ctx context.Context, prefix string, rev int64, fn func(key string, value []byte)) error {
	end := clientv3.GetPrefixRangeEnd(prefix)
	from := prefix
	for {
		rctx, cancel := context.WithTimeout(ctx, s.opts.RequestTimeout)
		resp, err := s.client.Get(rctx, from,
			clientv3.WithRange(end), clientv3.WithRev(rev), clientv3.WithLimit(loadPageSize))
		cancel()
		if err != nil {
			return fmt.Errorf("range %s: %w", prefix, err)
		}
		for _, kv := range resp.Kvs {
			fn(string(kv.Key), kv.Value)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// reload replaces the written cache by etcd's state, creating the
// generation when etcd has none (or replacing an older copy's, see
// observeGeneration), and marks every desired service dirty so
// that whatever etcd lacks is written.
func (s *Sink) reload(ctx context.Context) error {
	s.genMu.Lock()
	defer s.genMu.Unlock()
	s.reloadNeeded.Store(false)
	st, err := s.load(ctx)
	if err != nil {
		return err
	}
	gen := st.generation
	if gen == "" {
		gen, err = s.createGeneration(ctx)
		if err != nil {
			return err
		}
		if st.keys == 0 {
			s.log.Info("etcd is empty: created generation", "generation", gen)
		} else {
			s.log.Warn("etcd had no generation but holds meshrelay keys: created one", "generation", gen, "keys", st.keys)
		}
	} else if gen == s.restoredGen {
		// Its synced markers are the older copy's: a new generation
		// makes them count for nothing until rewritten.
		if gen, err = s.replaceGeneration(ctx, gen); err != nil {
			return err
		}
		s.log.Warn("etcd was restored from an older copy: replaced its generation", "old", s.restoredGen, "generation", gen,
			"services", len(st.written), "keys", st.keys)
	} else {
		s.log.Info("loaded etcd state", "generation", gen, "services", len(st.written), "keys", st.keys)
	}
	s.restoredGen = ""
	s.gen.Store(&gen)
	s.incarnation.Reset()
	s.incarnation.Observe(gen, true, st.rev)
	s.written, s.vipOwner, s.markers = st.written, st.vipOwner, st.markers
	s.authz.written = st.authz
	s.authzInEtcd.Store(int64(len(st.authz)))
	s.stray, s.strayDeleted = st.stray, 0
	if len(st.stray) > 0 {
		s.log.Warn("etcd holds keys that are not canonical meshrelay keys: the sweep deletes them",
			"keys", len(st.stray), "first", st.stray[0])
	}

	s.mu.Lock()
	dirty := make([]task, 0, len(s.desired)+1)
	for svc := range s.desired {
		dirty = append(dirty, task{svc: svc})
	}
	for a := range s.authz.desired {
		dirty = append(dirty, task{kind: kindAuthorization, authz: a})
	}
	if s.present != nil {
		dirty = append(dirty, task{kind: kindMarkers})
	}
	s.mu.Unlock()
	if s.opts.Fencer != nil {
		dirty = append(dirty, task{kind: kindShards})
	}
	s.queue.MarkAll(dirty)
	return nil
}

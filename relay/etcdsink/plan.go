package etcdsink

import (
	"fmt"
	"maps"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// opOverhead approximates the bytes of one operation beyond its key and
// value in a transaction request.
const opOverhead = 16

// plan is the operations that bring one service in etcd to its desired
// state, and the written state once they are applied.
type plan struct {
	svc     keyspace.Service
	ops     []clientv3.Op
	bytes   int
	puts    int
	deletes int
	// next is the service's written state after the plan; nil when the
	// service is deleted.
	next *writtenService
	// vips are the VIP index entries the plan changes. They are the only
	// keys two services' plans can share.
	vips []vipChange
	// pre and post are a staged plan's operations before and after ops:
	// the slices of a new slice generation, and the deletes of the old
	// one (and of stale keys). ops then flips the spec.
	pre, post []stagedOp
}

// stagedOp is one operation of a staged plan and its size.
type stagedOp struct {
	op    clientv3.Op
	bytes int
}

func (p *plan) postDel(key string) {
	p.post = append(p.post, stagedOp{op: clientv3.OpDelete(key), bytes: len(key) + opOverhead})
	p.deletes++
}

// empty reports whether the plan writes nothing.
func (p *plan) empty() bool { return len(p.ops)+len(p.pre)+len(p.post) == 0 }

// vipChange sets vips/<ip> to owner, or deletes it when remove is set.
type vipChange struct {
	ip     string
	owner  keyspace.Service
	remove bool
}

// ownerFunc returns who the VIP index says owns ip, taking into account
// the changes of plans not yet committed.
type ownerFunc func(ip string) (keyspace.Service, bool)

func (p *plan) put(key string, value []byte) {
	p.ops = append(p.ops, clientv3.OpPut(key, string(value)))
	p.bytes += len(key) + len(value) + opOverhead
	p.puts++
}

func (p *plan) del(key string, opts ...clientv3.OpOption) {
	p.ops = append(p.ops, clientv3.OpDelete(key, opts...))
	p.bytes += len(key) + opOverhead
	p.deletes++
}

// planService compares the desired state of svc with what was written and
// returns the operations for what differs (none when nothing does).
func (s *Sink) planService(svc keyspace.Service, d desiredState, owner ownerFunc) (*plan, error) {
	p := &plan{svc: svc}
	w := s.written[svc]
	if d.svc == nil {
		if w == nil {
			return p, nil
		}
		p.del(s.space.ServicePrefix(svc), clientv3.WithPrefix())
		for _, ip := range w.vips {
			if cur, ok := owner(ip); ok && cur == svc {
				s.releaseVIP(p, ip)
			}
		}
		return p, nil
	}

	var old writtenService
	if w != nil {
		old = *w
	}
	p, err := s.planUpdate(svc, d, old, old.gen, false)
	if err != nil {
		return nil, err
	}
	if len(p.ops)+len(d.svc.Spec.GetVips()) > s.opts.MaxTxnOps || p.bytes > s.opts.MaxTxnBytes {
		// Too large for one transaction: stage it under a new slice
		// generation (docs/contract.md, "Services of any size").
		if p, err = s.planUpdate(svc, d, old, max(old.gen, old.staleGen)+1, true); err != nil {
			return nil, err
		}
	}
	s.planVIPs(p, d, old, owner)
	return p, nil
}

// planUpdate plans writing the desired state d of svc over old with its
// slices under slice generation gen. Staged, every slice goes to p.pre and
// old's slices to p.post; otherwise only what changed goes to p.ops.
// Stale keys of other generations always go to p.post.
func (s *Sink) planUpdate(svc keyspace.Service, d desiredState, old writtenService, gen uint32, staged bool) (*plan, error) {
	p := &plan{svc: svc}
	rev := old.revision + 1
	observed := d.observed.UnixNano()
	next := &writtenService{revision: old.revision, gen: gen}

	spec := d.svc.Spec
	next.specHash = specHash(spec)
	if len(d.svc.Slices) > keyspace.MaxSlices {
		return nil, fmt.Errorf("service %s: %d endpoint slices, more than the keyspace allows (%d)", svc, len(d.svc.Slices), keyspace.MaxSlices)
	}
	next.slices = make(map[int]string, len(d.svc.Slices))
	for i, sl := range d.svc.Slices {
		h := sliceHash(sl)
		next.slices[i] = h
		if oh, ok := old.slices[i]; ok && oh == h && !staged {
			continue
		}
		v, err := sliceValue(sl, h, rev, observed)
		if err != nil {
			return nil, fmt.Errorf("service %s slice %d: %w", svc, i, err)
		}
		key := s.space.SliceOf(svc, gen, i)
		if staged {
			p.pre = append(p.pre, stagedOp{op: clientv3.OpPut(key, string(v)), bytes: len(key) + len(v) + opOverhead})
			p.puts++
		} else {
			p.put(key, v)
		}
		next.revision = rev
	}
	if next.specHash != old.specHash || gen != old.gen {
		v, err := specValue(spec, gen, next.specHash, rev, observed)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", svc, err)
		}
		p.put(s.space.Spec(svc), v)
		next.revision = rev
	}
	for _, i := range slices.Sorted(maps.Keys(old.slices)) {
		switch {
		case staged:
			p.postDel(s.space.SliceOf(svc, old.gen, i))
		case i >= len(d.svc.Slices):
			p.del(s.space.SliceOf(svc, old.gen, i))
		}
	}
	for _, key := range old.stale {
		p.postDel(key)
	}
	p.next = next
	return p, nil
}

// planVIPs adds the VIP index changes of d to p.
func (s *Sink) planVIPs(p *plan, d desiredState, old writtenService, owner ownerFunc) {
	svc, spec := p.svc, d.svc.Spec
	want := spec.GetVips()
	for i, ip := range want {
		if slices.Contains(want[:i], ip) {
			continue
		}
		cur, ok := owner(ip)
		if ok && cur == svc {
			continue
		}
		if ok && s.claimed(ip, cur) {
			// Two desired services list one VIP: the entry stays with
			// the one that has it until it lets go.
			s.log.Debug("VIP claimed by two services", "vip", ip, "owner", cur, "other", svc)
			continue
		}
		p.setVIP(s.space.VIP(ip), ip, svc)
	}
	for _, ip := range old.vips {
		if slices.Contains(want, ip) {
			continue
		}
		if cur, ok := owner(ip); ok && cur == svc {
			s.releaseVIP(p, ip)
		}
	}
}

// releaseVIP hands the index entry of ip to another desired service listing
// it, or deletes it.
func (s *Sink) releaseVIP(p *plan, ip string) {
	if other, ok := s.claimant(ip, p.svc); ok {
		p.setVIP(s.space.VIP(ip), ip, other)
		return
	}
	p.del(s.space.VIP(ip))
	p.vips = append(p.vips, vipChange{ip: ip, remove: true})
}

func (p *plan) setVIP(key, ip string, owner keyspace.Service) {
	p.put(key, []byte(owner.String()))
	p.vips = append(p.vips, vipChange{ip: ip, owner: owner})
}

// apply records a committed plan in the written cache.
func (s *Sink) apply(p *plan) {
	if p.next == nil {
		delete(s.written, p.svc)
		s.forgetDeleted(p.svc)
	} else {
		if w := s.written[p.svc]; w != nil {
			p.next.vips = w.vips
		}
		s.written[p.svc] = p.next
	}
	for _, c := range p.vips {
		if prev, ok := s.vipOwner[c.ip]; ok {
			if w := s.written[prev]; w != nil {
				w.vips = slices.DeleteFunc(w.vips, func(ip string) bool { return ip == c.ip })
			}
		}
		if c.remove {
			delete(s.vipOwner, c.ip)
			continue
		}
		s.vipOwner[c.ip] = c.owner
		w := s.written[c.owner]
		if w == nil {
			// The new owner has nothing else written yet.
			w = &writtenService{}
			s.written[c.owner] = w
		}
		w.vips = append(w.vips, c.ip)
	}
}

// forgetDeleted drops the desired entry of svc once its deletion is done,
// unless a newer Set wants it back.
func (s *Sink) forgetDeleted(svc keyspace.Service) {
	s.mu.Lock()
	if d, ok := s.desired[svc]; ok && d.svc == nil {
		delete(s.desired, svc)
	}
	s.mu.Unlock()
}

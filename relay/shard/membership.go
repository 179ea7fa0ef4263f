package shard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/meshrelay/meshrelay/internal/backoff"
	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// errSessionLost ends a session whose lease etcd no longer renews.
var errSessionLost = errors.New("etcd session lost (lease expired or revoked)")

// Membership is one replica's membership and shard leadership. Create it
// with New and call Run; Fence, Deposed, Leaders, Held and Stats may be
// called from any goroutine.
type Membership struct {
	client  *clientv3.Client
	opts    Options
	space   keyspace.Space
	log     *slog.Logger
	metrics *metrics
	poke    chan struct{}

	// Owned by Run. peers are the ready replicas, other than this one,
	// of the latest table that held this replica's record; a new session
	// expects them back (view.rejoining) until expectUntil.
	peers, expect map[string]bool
	expectUntil   time.Time
	previous      map[int]bool // shards led in the previous session
	// peerLed are the shards peers led in that table; reserved, those of
	// the previous session, left to them until expectUntil.
	peerLed, reserved map[int]bool

	mu      sync.Mutex
	leaders map[int]*Leader
	members int // members in the latest table read
	// settled: at the latest table read every shard had a leader and
	// every shard led by this replica's keys was in leaders.
	settled bool
}

// New returns a Membership of the replica opts.RelayID. Nothing happens
// until Run.
func New(c *clientv3.Client, opts Options) (*Membership, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	m := &Membership{
		client:  c,
		opts:    opts,
		space:   keyspace.New(opts.Cluster),
		log:     opts.Logger,
		poke:    make(chan struct{}, 1),
		leaders: map[int]*Leader{},
	}
	m.metrics = newMetrics(m)
	return m, nil
}

// Run keeps the replica registered and balances shards until ctx is done,
// starting a new session (a new lease) whenever the previous one is lost.
// On return it has dropped every shard and, when etcd is reachable,
// revoked its lease, so other replicas take over at once. It returns
// ctx.Err().
func (m *Membership) Run(ctx context.Context) error {
	retry := backoff.New(backoff.Options{Initial: 100 * time.Millisecond, Max: m.opts.LeaseTTL})
	for {
		sess, err := concurrency.NewSession(m.client, concurrency.WithTTL(m.opts.ttlSeconds()), concurrency.WithContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			m.log.Warn("etcd session failed, retrying", "err", err)
			if !retry.Wait(ctx) {
				return ctx.Err()
			}
			continue
		}
		retry.Reset()
		// The peers of the previous session had leases at least as
		// long as this one: expect them back for a lease TTL before
		// taking their share of vacant shards.
		m.expect, m.reserved, m.expectUntil = m.peers, m.peerLed, time.Now().Add(m.opts.LeaseTTL)
		m.log.Info("joined", "relay_id", m.opts.RelayID, "lease", fmt.Sprintf("%x", sess.Lease()), "ttl", m.opts.ttlSeconds(), "expected_peers", len(m.expect))
		err = m.runSession(ctx, sess)
		m.previous = map[int]bool{}
		for _, shard := range m.Held() {
			m.previous[shard] = true
		}
		m.dropAll("session ended")
		m.mu.Lock()
		m.settled = false
		m.mu.Unlock()
		// Stop renewing and revoke the lease, if it still exists, so that
		// this session's election keys go now: other replicas take over
		// at once, and no key of an abandoned session stays in line.
		sess.Orphan()
		rctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, rerr := m.client.Revoke(rctx, sess.Lease())
		cancel()
		if ctx.Err() != nil {
			m.log.Info("left", "revoked", rerr == nil)
			return ctx.Err()
		}
		m.log.Warn("left: shards dropped, joining again", "err", err)
		if !retry.Wait(ctx) {
			return ctx.Err()
		}
	}
}

// campaign is this replica's candidacy in one shard's election.
type campaign struct {
	e         *concurrency.Election
	cancel    context.CancelFunc
	leading   bool
	cancelled bool // cancelled before its result arrived
}

type campaignResult struct {
	shard int
	err   error
}

// runSession registers the member and balances until the session or ctx
// ends.
func (m *Membership) runSession(ctx context.Context, sess *concurrency.Session) error {
	campaigns := map[int]*campaign{}
	results := make(chan campaignResult, m.opts.Shards)
	var wg sync.WaitGroup
	defer func() {
		for _, c := range campaigns {
			c.cancel()
		}
		wg.Wait()
	}()
	var last []byte
	ticker := time.NewTicker(m.opts.Interval)
	defer ticker.Stop()
	for {
		if err := m.tick(ctx, sess, campaigns, results, &wg, &last); errors.Is(err, errSessionLost) {
			return err
		} else if err != nil && ctx.Err() == nil {
			m.log.Debug("balancing failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-sess.Done():
			return errSessionLost
		case r := <-results:
			// Take up every election already decided before balancing
			// again: campaigns started in one round end together (all
			// vacant after an etcd wipe), and a tick per result would
			// lead them one read of the table at a time.
			won := m.campaignDone(ctx, r, campaigns)
			for more := true; more; {
				select {
				case r := <-results:
					won = m.campaignDone(ctx, r, campaigns) || won
				default:
					more = false
				}
			}
			if won {
				m.opts.OnChange()
			}
		case <-ticker.C:
		case <-m.poke:
		}
	}
}

// campaignDone handles a finished Campaign: elected, or given up. It
// reports whether this replica now leads the shard; the caller then tells
// OnChange, once for every result at hand.
func (m *Membership) campaignDone(ctx context.Context, r campaignResult, campaigns map[int]*campaign) bool {
	c := campaigns[r.shard]
	if c == nil {
		return false
	}
	if r.err != nil || c.cancelled || ctx.Err() != nil {
		delete(campaigns, r.shard)
		if r.err == nil || !c.cancelled {
			m.resign(ctx, c.e) // elected too late, or failed: leave the line
		}
		return false
	}
	c.leading = true
	l := &Leader{Shard: r.shard, Key: c.e.Key(), Revision: c.e.Rev(), Since: time.Now(), done: make(chan struct{})}
	m.mu.Lock()
	m.leaders[r.shard] = l
	m.mu.Unlock()
	m.metrics.changes.Inc()
	m.log.Info("leading shard", "shard", r.shard, "key", l.Key, "revision", l.Revision)
	return true
}

// tick reads the table, notices lost shards, and applies balance's moves.
func (m *Membership) tick(ctx context.Context, sess *concurrency.Session, campaigns map[int]*campaign, results chan<- campaignResult, wg *sync.WaitGroup, last *[]byte) error {
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, m.opts.LeaseTTL)
	table, err := ReadTable(rctx, m.client, m.space, m.opts.Shards)
	cancel()
	if err != nil {
		return err
	}
	if took := time.Since(start); took > m.opts.Interval {
		m.log.Debug("slow read of the election table", "members", len(table.Members), "revision", table.Revision, "took", took.Round(time.Millisecond))
	}
	if _, ok := table.Members[m.opts.RelayID]; !ok && *last != nil {
		// Our record, on our lease, is gone: the lease expired or etcd
		// was wiped. Do not wait for the keep-alive to notice.
		return fmt.Errorf("%s missing: %w", m.space.Relay(m.opts.RelayID), errSessionLost)
	}
	if _, ok := table.Members[m.opts.RelayID]; ok {
		m.peers = readyPeers(table, m.opts.RelayID)
		m.peerLed = map[int]bool{}
		for shard := range table.Lines {
			if l := table.Leader(shard); m.peers[l] {
				m.peerLed[shard] = true
			}
		}
	}
	m.mu.Lock()
	m.members = len(table.Members)
	m.settled = true
	for s, l := range table.Lines {
		if len(l) == 0 || l[0].Relay == m.opts.RelayID && m.leaders[s] == nil {
			m.settled = false
		}
	}
	m.mu.Unlock()

	// A key of this session that no campaign stands for (a Campaign that
	// failed half-way leaves one) would one day lead with nobody behind
	// it: delete it.
	for shard, line := range table.Lines {
		if campaigns[shard] != nil {
			continue
		}
		own := m.candidateKey(sess, shard)
		for _, c := range line {
			if c.Key == own {
				m.log.Debug("deleting a stray election key", "key", own)
				rctx, cancel := context.WithTimeout(ctx, m.opts.LeaseTTL)
				_, err := m.client.Delete(rctx, own)
				cancel()
				if err != nil {
					return fmt.Errorf("delete %s: %w", own, err)
				}
				return nil // balance on a fresh read
			}
		}
	}

	v := view{self: m.opts.RelayID, eligible: m.opts.Eligible(), table: table, held: map[int]bool{}, queued: map[int]bool{}}
	if time.Now().Before(m.expectUntil) {
		v.rejoining, v.previous, v.reserved = m.expect, m.previous, m.reserved
	}
	for shard, c := range campaigns {
		switch {
		case !c.leading:
			v.queued[shard] = true
		case !m.Leads(shard):
			// Deposed by the writer: leave the election for good.
			delete(campaigns, shard)
			m.resign(ctx, c.e)
		case len(table.Lines[shard]) == 0 || table.Lines[shard][0].Key != c.e.Key():
			m.drop(shard, "election key gone")
			delete(campaigns, shard)
			c.cancel()
		default:
			v.held[shard] = true
		}
	}

	mv := balance(v)
	for _, shard := range mv.cancel {
		c := campaigns[shard]
		c.cancel()
		c.cancelled = true
	}
	for _, shard := range mv.resign {
		m.drop(shard, "handed off to the next candidate")
		m.resign(ctx, campaigns[shard].e)
		delete(campaigns, shard)
	}
	for _, shard := range mv.campaign {
		cctx, cancel := context.WithCancel(ctx)
		// NewElection adds the '/' that ends the shard's prefix.
		e := concurrency.NewElection(sess, strings.TrimSuffix(m.space.ShardElection(shard), "/"))
		c := &campaign{e: e, cancel: cancel}
		campaigns[shard] = c
		m.log.Debug("campaign started", "shard", shard)
		wg.Go(func() {
			err := c.e.Campaign(cctx, m.opts.RelayID)
			m.log.Debug("campaign returned", "shard", shard, "err", err)
			results <- campaignResult{shard: shard, err: err}
		})
	}

	rec, err := EncodeMember(Member{
		ID: m.opts.RelayID, Pod: m.opts.Pod, Version: m.opts.Version,
		Shards: m.Held(), Ready: v.eligible, Lease: fmt.Sprintf("%x", sess.Lease()),
	})
	if err != nil {
		return err
	}
	if !bytes.Equal(rec, *last) {
		rctx, cancel := context.WithTimeout(ctx, m.opts.LeaseTTL)
		_, err := m.client.Put(rctx, m.space.Relay(m.opts.RelayID), string(rec), clientv3.WithLease(sess.Lease()))
		cancel()
		if err != nil {
			return fmt.Errorf("put %s: %w", m.space.Relay(m.opts.RelayID), err)
		}
		*last = rec
	}
	return nil
}

// readyPeers returns the ready members of table other than self.
func readyPeers(table *Table, self string) map[string]bool {
	out := map[string]bool{}
	for id, mb := range table.Members {
		if mb.Ready && id != self {
			out[id] = true
		}
	}
	return out
}

// candidateKey is the key concurrency.Election gives this session in
// shard's election.
func (m *Membership) candidateKey(sess *concurrency.Session, shard int) string {
	return fmt.Sprintf("%s%x", m.space.ShardElection(shard), sess.Lease())
}

// resign leaves an election: deletes this replica's key if it is still
// the one it created.
func (m *Membership) resign(ctx context.Context, e *concurrency.Election) {
	if e.Key() == "" {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, m.opts.LeaseTTL)
	defer cancel()
	if err := e.Resign(rctx); err != nil {
		m.log.Debug("resign failed; the lease removes the key", "key", e.Key(), "err", err)
	}
}

// Leads reports whether this replica holds shard's leadership.
func (m *Membership) Leads(shard int) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leaders[shard] != nil
}

// drop ends the term of shard, if any, and tells OnChange.
func (m *Membership) drop(shard int, why string) bool {
	m.mu.Lock()
	l := m.leaders[shard]
	delete(m.leaders, shard)
	m.mu.Unlock()
	if l == nil {
		return false
	}
	close(l.done)
	m.metrics.changes.Inc()
	m.log.Info("stopped leading shard", "shard", shard, "why", why, "held_for", time.Since(l.Since).Round(time.Millisecond))
	m.opts.OnChange()
	return true
}

// dropAll ends every term.
func (m *Membership) dropAll(why string) {
	for _, shard := range m.Held() {
		m.drop(shard, why)
	}
}

// Fence returns the comparison that holds while this replica leads shard;
// ok is false when it does not lead it. It implements etcdsink.Fencer.
func (m *Membership) Fence(shard int) (cmp clientv3.Cmp, ok bool) {
	m.mu.Lock()
	l := m.leaders[shard]
	m.mu.Unlock()
	if l == nil {
		return clientv3.Cmp{}, false
	}
	return l.Fence(), true
}

// Deposed is told by the writer that etcd refused a write of shard on the
// fence: another replica leads it. The shard is dropped at once and its
// election left. It implements etcdsink.Fencer.
func (m *Membership) Deposed(shard int) {
	if m.drop(shard, "deposed: a write was refused by the fence") {
		m.metrics.deposed.Inc()
	}
	m.Poke()
}

// Poke asks for a balancing round now instead of at the next Interval, for
// a change the Membership cannot see itself: Options.Eligible became true
// (the replica's upstream just synced) or false. It does not block.
func (m *Membership) Poke() {
	select {
	case m.poke <- struct{}{}:
	default:
	}
}

// Leaders returns the current terms, by shard.
func (m *Membership) Leaders() []*Leader {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Leader, 0, len(m.leaders))
	for _, l := range m.leaders {
		out = append(out, l)
	}
	slices.SortFunc(out, func(a, b *Leader) int { return a.Shard - b.Shard })
	return out
}

// Settled reports whether, at the latest read of the election table,
// every shard had a leader and this replica had taken up every shard its
// keys lead.
func (m *Membership) Settled() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.settled
}

// Held returns the shards this replica leads, ascending.
func (m *Membership) Held() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]int, 0, len(m.leaders))
	for s := range m.leaders {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

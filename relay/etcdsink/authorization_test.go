package etcdsink

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

// policy is the i-th test authorization policy and a value for it.
func policy(i, version int) DesiredAuthorization {
	a := keyspace.Authorization{Namespace: fmt.Sprintf("ns%d", i%3), Name: fmt.Sprintf("p-%d", i)}
	return DesiredAuthorization{Authorization: a, Value: fmt.Appendf(nil, `{"name":%q,"v":%d}`, a.Name, version)}
}

func put(t *testing.T, c clientv3.KV, key, value string) {
	t.Helper()
	if _, err := c.Put(context.Background(), key, value); err != nil {
		t.Fatal(err)
	}
}

// TestAuthorizationsWrittenAndSwept: policies are written under their keys,
// an identical value writes nothing, a policy etcd holds that the complete
// state lacks is swept, a key under authorizations/ that does not parse is
// deleted as stray, and nothing is deleted before the state is complete.
func TestAuthorizationsWrittenAndSwept(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	stale := space.AuthorizationKey(keyspace.Authorization{Namespace: "old", Name: "gone"})
	stray := space.AuthorizationsPrefix() + "ns0/a/b"
	put(t, c, stale, "{}")
	put(t, c, stray, "{}")

	s := New(c, testOptions())
	testenv.Run(t, s.Run)
	batch := []DesiredAuthorization{policy(0, 0), policy(1, 0), policy(2, 0)}
	s.SetAuthorizations(batch)
	testenv.Eventually(t, "policies written", func() error {
		for _, d := range batch {
			if v := get(t, c, space.AuthorizationKey(d.Authorization)); v == nil || string(v.value) != string(d.Value) {
				return fmt.Errorf("%s: %v", d.Authorization, v)
			}
		}
		return nil
	})
	if get(t, c, stale) == nil || get(t, c, stray) == nil {
		t.Fatal("a key was deleted before the state was complete")
	}

	s.CompleteAuthorizations([]keyspace.Authorization{batch[0].Authorization, batch[1].Authorization, batch[2].Authorization})
	s.Complete(nil)
	waitSynced(t, s)
	testenv.Eventually(t, "stale and stray policy keys deleted", func() error {
		if n := countPrefix(t, c, space.AuthorizationsPrefix()); n != 3 {
			return fmt.Errorf("%d keys under authorizations/, want 3", n)
		}
		return nil
	})

	before := s.Stats()
	rev := headerRevision(t, c)
	s.SetAuthorizations([]DesiredAuthorization{policy(0, 0)})
	testenv.EventuallyTrue(t, "identical value skipped", func() bool {
		st := s.Stats()
		return st.Skipped > before.Skipped && st.QueueDepth == 0
	})
	if got := headerRevision(t, c); got != rev {
		t.Errorf("identical value wrote etcd: revision %d -> %d", rev, got)
	}

	s.SetAuthorizations([]DesiredAuthorization{policy(1, 1), {Authorization: batch[2].Authorization}})
	testenv.Eventually(t, "change and delete written", func() error {
		if v := get(t, c, space.AuthorizationKey(batch[1].Authorization)); v == nil || string(v.value) != string(policy(1, 1).Value) {
			return fmt.Errorf("changed policy: %v", v)
		}
		if get(t, c, space.AuthorizationKey(batch[2].Authorization)) != nil {
			return fmt.Errorf("deleted policy still in etcd")
		}
		return nil
	})
	if n := s.Stats().Authorizations; n != 2 {
		t.Errorf("Stats().Authorizations = %d, want 2", n)
	}
}

// TestAuthorizationMassDeletionHeld: a complete state without most of the
// policies etcd holds is held back until the operator releases it.
func TestAuthorizationMassDeletionHeld(t *testing.T) {
	f := newFixture(t, testOptions())
	var batch []DesiredAuthorization
	var keep []keyspace.Authorization
	for i := range 12 {
		batch = append(batch, policy(i, 0))
	}
	keep = append(keep, batch[0].Authorization)
	f.sink.SetAuthorizations(batch)
	f.sink.CompleteAuthorizations(func() []keyspace.Authorization {
		all := make([]keyspace.Authorization, len(batch))
		for i, d := range batch {
			all[i] = d.Authorization
		}
		return all
	}())
	f.sink.Complete(nil)
	waitSynced(t, f.sink)
	testenv.Eventually(t, "12 policies", func() error {
		if n := countPrefix(t, f.c, space.AuthorizationsPrefix()); n != 12 {
			return fmt.Errorf("%d policies", n)
		}
		return nil
	})

	f.sink.CompleteAuthorizations(keep)
	f.sink.Complete(nil)
	testenv.EventuallyTrue(t, "removals held", func() bool { return f.sink.HeldAuthorizationDeletions() == 11 })
	time.Sleep(200 * time.Millisecond) // > MaxDelay: a write would have happened
	if n := countPrefix(t, f.c, space.AuthorizationsPrefix()); n != 12 {
		t.Fatalf("%d policies in etcd while the removals are held, want 12", n)
	}
	if n := f.sink.ReleaseDeletions(); n != 11 {
		t.Errorf("ReleaseDeletions = %d, want 11", n)
	}
	testenv.Eventually(t, "released removals written", func() error {
		if n := countPrefix(t, f.c, space.AuthorizationsPrefix()); n != 1 {
			return fmt.Errorf("%d policies, want 1", n)
		}
		return nil
	})
	if get(t, f.c, space.AuthorizationKey(keep[0])) == nil {
		t.Error("the policy upstream kept was deleted")
	}
}

// TestFencedSinkWritesOnlyItsShardsPolicies: policies are sharded by the
// service shard function; a fenced Sink writes those of its shards only.
func TestFencedSinkWritesOnlyItsShardsPolicies(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	f := &fakeFencer{}
	cmp, _ := elect(t, c, 1, "relay-a")
	f.set(1, cmp)
	s := newFencedSink(c, "relay-a", f)
	var mine, other []DesiredAuthorization
	for i := 0; len(mine) < 3 || len(other) < 3; i++ {
		d := policy(i, 0)
		switch keyspace.AuthorizationShard(d.Authorization, s.opts.Shards) {
		case 1:
			mine = append(mine, d)
		case 2:
			other = append(other, d)
		}
	}
	s.SetAuthorizations(append(append([]DesiredAuthorization(nil), mine...), other...))
	s.Complete(nil)
	testenv.Run(t, s.Run)
	s.ShardsChanged()
	waitShardSynced(t, s, 1)
	testenv.Eventually(t, "policies of the led shard", func() error {
		for _, d := range mine {
			if get(t, c, space.AuthorizationKey(d.Authorization)) == nil {
				return fmt.Errorf("%s of the led shard not written", d.Authorization)
			}
		}
		return nil
	})
	for _, d := range other {
		if get(t, c, space.AuthorizationKey(d.Authorization)) != nil {
			t.Errorf("%s of another shard written", d.Authorization)
		}
	}
}

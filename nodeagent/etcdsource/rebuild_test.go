package etcdsource

import (
	"context"
	"sync"
	"testing"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

// TestEtcdRestoredKeepsWhatTheCopyLacks: etcd is restored from an older
// copy holding the same generation and synced markers naming it, but not a
// service b created since. The source sees the revision go backwards and
// removes nothing on the strength of those restored markers; b goes only
// once the relay's new generation has a marker of b's shard
// (docs/contract.md, "Generation and wiped etcd").
func TestEtcdRestoredKeepsWhatTheCopyLacks(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts etcd")
	}
	svcs := servicesInShards("ns", 2, keyspace.DefaultShards)
	a, b := svcs[0], svcs[1]

	// The older copy: g1, a, and markers of g1 for both shards.
	oldDir := t.TempDir()
	older := testenv.StartEtcd(t, embedetcd.Options{Dir: oldDir})
	ow := testenv.Client(t, older.Endpoints())
	put(t, ow, space.Generation(), "g1")
	writeService(t, ow, service(a, 3, 0), 1, 0)
	putMarker(t, ow, shardOf(a), "g1", 1)
	putMarker(t, ow, shardOf(b), "g1", 0)
	if err := older.Close(); err != nil {
		t.Fatal(err)
	}

	srv := testenv.StartEtcd(t, embedetcd.Options{})
	writer := testenv.Client(t, srv.Endpoints())
	put(t, writer, space.Generation(), "g1")
	for _, s := range svcs {
		writeService(t, writer, service(s, 3, 0), 1, 0)
		putMarker(t, writer, shardOf(s), "g1", 1)
	}
	for range 30 { // beyond the older copy's revision
		put(t, writer, space.Prefix()+"relays/r0", "x")
	}

	src, px := runSourceVia(t, srv, Options{})
	rec := watchLoaded(t, src, svcs)

	// Restore the older copy on the same address.
	writer = replaceEtcd(t, srv, px, embedetcd.Options{Dir: oldDir})
	testenv.EventuallyTrue(t, "restore detected and b's removal deferred", func() bool {
		st := src.Stats()
		return st.GenerationChanges >= 1 && st.Deferred == 1
	})
	rec.poll()
	for _, s := range svcs {
		if evs := rec.got[s]; evs[len(evs)-1].State == nil {
			t.Fatalf("%s removed on a restored marker: %v", s, evs)
		}
	}

	// The relay replaces the generation and writes its markers.
	put(t, writer, space.Generation(), "g2")
	writeService(t, writer, service(a, 3, 0), 2, 0)
	putMarker(t, writer, shardOf(a), "g2", 1)
	putMarker(t, writer, shardOf(b), "g2", 0)
	rec.waitFor(b, "b's removal", isRemoval)
	rec.poll()
	if evs := rec.got[a]; evs[len(evs)-1].State == nil {
		t.Fatalf("a removed: %v", evs)
	}
}

// TestNamespaceAfterWipe: etcd is replaced by an empty one whose revisions
// start over; RunNamespace lists the namespace again and finds a service
// created in the new etcd, although its revision is below the old one's.
func TestNamespaceAfterWipe(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts etcd")
	}
	srv, writer := startG1(t)
	a := keyspace.Service{Namespace: "ns", Name: "a"}
	b := keyspace.Service{Namespace: "ns", Name: "b"}
	writeService(t, writer, service(a, 1, 0), 1, 0)
	for range 30 { // beyond what the new etcd reaches
		put(t, writer, space.Prefix()+"relays/r0", "x")
	}

	src, px := runSourceVia(t, srv, Options{})
	var (
		mu    sync.Mutex
		found = map[keyspace.Service]bool{}
	)
	has := func(svc keyspace.Service) func() bool {
		return func() bool {
			mu.Lock()
			defer mu.Unlock()
			return found[svc]
		}
	}
	testenv.Run(t, func(ctx context.Context) error {
		return src.RunNamespace(ctx, "ns", NamespaceHandler{Found: func(svc keyspace.Service, _ bool) {
			mu.Lock()
			found[svc] = true
			mu.Unlock()
		}})
	})
	testenv.EventuallyTrue(t, "a found", has(a))
	testenv.EventuallyTrue(t, "control loop loaded", func() bool { return src.Stats().WatchesOpen >= 2 })

	// Wipe: a new, empty etcd on the same address.
	writer = replaceEtcd(t, srv, px, embedetcd.Options{})
	put(t, writer, space.Generation(), "g2")
	writeService(t, writer, service(b, 1, 0), 1, 0)
	testenv.EventuallyTrue(t, "b found after the wipe", has(b))
	if st := src.Stats(); st.GenerationChanges == 0 {
		t.Fatalf("stats %+v: want a generation change", st)
	}
}

package etcdsink

import (
	"context"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

// TestMarkerWaitsForItsShardServices: a shard's synced marker is written
// only once every desired service of that shard is in etcd, however long
// that takes (docs/contract.md, section 2): with part of shard 0 written
// and all of shard 1, only synced/1 is written and Synced stays open;
// once the rest is written, synced/0 follows.
func TestMarkerWaitsForItsShardServices(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	c := testenv.Client(t, srv.Endpoints())
	opts := testOptions()
	opts.Shards = 2
	s := New(c, opts.withDefaults())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s.reload(ctx); err != nil { // what Run does first
		t.Fatal(err)
	}

	var shard0, shard1, present []keyspace.Service
	for i := 0; len(shard0) < 6 || len(shard1) < 6; i++ {
		svc := svcName(i)
		switch keyspace.Shard(svc, opts.Shards) {
		case 0:
			shard0 = append(shard0, svc)
		case 1:
			shard1 = append(shard1, svc)
		}
		s.Set(svc, newService(svc, []string{vip(i)}, 2, 0), time.Now())
		present = append(present, svc)
	}
	s.Complete(present)

	// Shard 1 completely, shard 0 half: as when a batch of a rebuild
	// failed half way, or the rest waits in the queue.
	if err := s.writeServices(ctx, append(shard1, shard0[:3]...)); err != nil {
		t.Fatal(err)
	}
	if err := s.writeMarkers(ctx); err != nil {
		t.Fatal(err)
	}
	if get(t, c, space.Synced(1)) == nil {
		t.Error("synced/1 not written although every service of shard 1 is in etcd")
	}
	if m := get(t, c, space.Synced(0)); m != nil {
		t.Fatalf("synced/0 written with 3 of its 6 services in etcd: %s", m.value)
	}
	select {
	case <-s.Synced():
		t.Fatal("Synced closed while shard 0 is not in etcd")
	default:
	}
	if !s.markersWaiting {
		t.Error("markers not left waiting for shard 0")
	}

	if err := s.writeServices(ctx, shard0[3:]); err != nil {
		t.Fatal(err)
	}
	if err := s.writeMarkers(ctx); err != nil {
		t.Fatal(err)
	}
	m := get(t, c, space.Synced(0))
	if m == nil {
		t.Fatal("synced/0 not written once its services are in etcd")
	}
	if got, err := keyspace.ParseMarker(m.value); err != nil || got.Services != len(shard0) || got.Generation != s.generation() {
		t.Errorf("synced/0: %+v, %v", got, err)
	}
	select {
	case <-s.Synced():
	default:
		t.Error("Synced not closed once every marker is written")
	}
}

package keyspace

import (
	"hash/fnv"
	"testing"
)

func TestKeys(t *testing.T) {
	s := New("")
	svc := Service{"default", "reviews"}
	cases := map[string]string{
		s.Spec(svc):          "/meshrelay/v1/Kubernetes/services/default/reviews/spec",
		s.Slice(svc, 3):      "/meshrelay/v1/Kubernetes/services/default/reviews/endpoints/3",
		s.ServicePrefix(svc): "/meshrelay/v1/Kubernetes/services/default/reviews/",
		s.VIP("127.77.0.1"):  "/meshrelay/v1/Kubernetes/vips/127.77.0.1",
		s.Synced(7):          "/meshrelay/v1/Kubernetes/synced/7",
		s.Generation():       "/meshrelay/v1/Kubernetes/generation",
		s.Relay("r1"):        "/meshrelay/v1/Kubernetes/relays/r1",
		s.ShardElection(2):   "/meshrelay/v1/Kubernetes/shards/2/",
	}
	for got, want := range cases {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if got := New("east").Spec(svc); got != "/meshrelay/v1/east/services/default/reviews/spec" {
		t.Errorf("cluster prefix: %q", got)
	}
}

func TestParseServiceKey(t *testing.T) {
	s := New("c1")
	svc := Service{"ns", "a"}
	if k, ok := s.ParseServiceKey(s.Spec(svc)); !ok || k.Kind != KindSpec || k.Service != svc {
		t.Fatalf("spec: %+v %v", k, ok)
	}
	if k, ok := s.ParseServiceKey(s.Slice(svc, 12)); !ok || k.Kind != KindSlice || k.Slice != 12 || k.Service != svc {
		t.Fatalf("slice: %+v %v", k, ok)
	}
	if k, ok := s.ParseServiceKey(s.SliceOf(svc, 5, 12)); !ok || k.Kind != KindSlice || k.Slice != 12 || k.Gen != 5 || k.Service != svc {
		t.Fatalf("slice of generation 5: %+v %v", k, ok)
	}
	if got := s.SliceOf(svc, 0, 3); got != s.Slice(svc, 3) {
		t.Fatalf("generation 0 key %q, want %q", got, s.Slice(svc, 3))
	}
	for _, bad := range []string{
		s.ServicePrefix(svc) + "endpoints/0/1",
		s.ServicePrefix(svc) + "endpoints/05/1",
		s.ServicePrefix(svc) + "endpoints/5/01",
		s.ServicePrefix(svc) + "endpoints/5/",
		s.ServicePrefix(svc) + "endpoints/5/1/2",
		s.ServicePrefix(svc) + "endpoints/2147483648/1",
		s.VIP("127.77.0.1"),
		s.ServicePrefix(svc) + "endpoints/x",
		s.ServicePrefix(svc) + "other",
		New("c2").Spec(svc),
		s.ServicesPrefix() + "/a/spec",
		s.ServicesPrefix() + "ns//spec",
		s.ServicesPrefix() + "ns/a/spec/",
		s.ServicesPrefix() + "ns/a/spec/x",
		s.ServicesPrefix() + "ns/a/b/spec",
		s.ServicePrefix(svc) + "endpoints/010",
		s.ServicePrefix(svc) + "endpoints/00",
		s.ServicePrefix(svc) + "endpoints/+1",
		s.ServicePrefix(svc) + "endpoints/-1",
		s.ServicePrefix(svc) + "endpoints/",
		s.ServicePrefix(svc) + "endpoints/1/x",
		s.ServicePrefix(svc) + "endpoints/100000000",
		s.ServicePrefix(svc) + "endpoints/99999999999999999999999",
		s.ServicePrefix(svc) + "endpoints/65536",
	} {
		if _, ok := s.ParseServiceKey(bad); ok {
			t.Errorf("parsed %q", bad)
		}
	}
}

func TestParseServiceKeyBounds(t *testing.T) {
	s := New("c1")
	svc := Service{"ns", "a"}
	for _, i := range []int{0, 9, 10, MaxSlices - 1} {
		k, ok := s.ParseServiceKey(s.Slice(svc, i))
		if !ok || k.Slice != i {
			t.Errorf("slice %d: %+v %v", i, k, ok)
		}
	}
	if _, ok := s.ParseServiceKey(s.Slice(svc, MaxSlices)); ok {
		t.Errorf("slice %d (MaxSlices) parsed", MaxSlices)
	}
}

func TestParseSynced(t *testing.T) {
	s := New("c1")
	for _, i := range []int{0, 7, MaxShards - 1} {
		if got, ok := s.ParseSynced(s.Synced(i)); !ok || got != i {
			t.Errorf("synced %d: %d %v", i, got, ok)
		}
	}
	for _, bad := range []string{
		s.SyncedPrefix(), s.SyncedPrefix() + "07", s.SyncedPrefix() + "-1", s.SyncedPrefix() + "1/",
		s.SyncedPrefix() + "x", s.Synced(MaxShards), New("c2").Synced(1), s.Generation(),
	} {
		if got, ok := s.ParseSynced(bad); ok {
			t.Errorf("parsed %q as %d", bad, got)
		}
	}
}

func TestShard(t *testing.T) {
	svc := Service{"default", "reviews"}
	h := fnv.New32a()
	h.Write([]byte("default/reviews"))
	if got, want := Shard(svc, 16), int(h.Sum32()%16); got != want {
		t.Fatalf("Shard = %d, want %d", got, want)
	}
	if Shard(svc, 1) != 0 || Shard(svc, 0) != 0 {
		t.Fatal("one shard must be shard 0")
	}
	seen := map[int]bool{}
	for i := 0; i < 1000; i++ {
		seen[Shard(Service{"ns", string(rune('a'+i%26)) + string(rune('a'+i/26))}, 16)] = true
	}
	if len(seen) != 16 {
		t.Fatalf("1000 services cover %d of 16 shards", len(seen))
	}
}

func TestParseService(t *testing.T) {
	if s, err := ParseService("ns/name"); err != nil || s != (Service{"ns", "name"}) {
		t.Fatal(s, err)
	}
	for _, bad := range []string{"", "ns", "/x", "x/", "a/b/c"} {
		if _, err := ParseService(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

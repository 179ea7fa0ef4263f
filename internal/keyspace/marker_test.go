package keyspace

import (
	"strings"
	"testing"
	"time"
)

func TestMarkerCodec(t *testing.T) {
	m := Marker{Shard: 3, Shards: 16, Cluster: "c1", Generation: "g1", Relay: "r1", Services: 42,
		Time: MarkerTime(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)), HeldDeletions: true}
	b, err := EncodeMarker(m)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"shard":3,"shards":16,"cluster":"c1","generation":"g1","relay":"r1","services":42,"time":"2026-01-02T03:04:05Z","held_deletions":true}`
	if string(b) != want {
		t.Fatalf("encoded\n%s\nwant\n%s", b, want)
	}
	got, err := ParseMarker(b)
	if err != nil || got != m {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	// An older writer's marker, without shards/cluster/held_deletions.
	old, err := ParseMarker([]byte(`{"shard":1,"generation":"g","relay":"r","services":2,"time":"t","extra":1}`))
	if err != nil || old.Shard != 1 || old.Generation != "g" || old.Shards != 0 || old.HeldDeletions {
		t.Fatalf("old marker: %+v %v", old, err)
	}
	for _, bad := range []string{``, `x`, `{}`, `{"shard":1}`, `{"shard":-1,"generation":"g"}`,
		`{"shard":5,"shards":4,"generation":"g"}`, `{"shard":1,"generation":"g","services":-1}`, `[]`} {
		if m, err := ParseMarker([]byte(bad)); err == nil {
			t.Errorf("parsed %q as %+v", bad, m)
		}
	}
	if _, err := EncodeMarker(Marker{Shard: 1}); err == nil || !strings.Contains(err.Error(), "no generation") {
		t.Errorf("encoded a marker without generation: %v", err)
	}
}

func TestMarkerSameAs(t *testing.T) {
	a := Marker{Shard: 1, Shards: 2, Generation: "g", Relay: "r", Services: 3, Time: "t1"}
	b := a
	b.Time = "t2"
	if !a.SameAs(b) {
		t.Error("markers differing only by time are not the same")
	}
	b.Services = 4
	if a.SameAs(b) {
		t.Error("markers differing by services are the same")
	}
	b = a
	b.HeldDeletions = true
	if a.SameAs(b) {
		t.Error("markers differing by held deletions are the same")
	}
}

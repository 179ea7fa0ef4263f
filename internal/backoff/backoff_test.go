package backoff

import (
	"context"
	"testing"
	"time"
)

func TestNextGrowsWithinBounds(t *testing.T) {
	b := New(Options{Initial: 100 * time.Millisecond, Max: time.Second})
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, d := range want {
		d *= time.Millisecond
		got := b.Next()
		if got < d/2 || got > d {
			t.Fatalf("attempt %d: %v, want in [%v, %v]", i, got, d/2, d)
		}
	}
	b.Reset()
	if got := b.Next(); got > 100*time.Millisecond {
		t.Fatalf("after Reset: %v", got)
	}
}

func TestDefaults(t *testing.T) {
	o := Options{Initial: time.Minute}.WithDefaults()
	if o.Max != time.Minute {
		t.Fatalf("Max below Initial not raised: %+v", o)
	}
	if o := (Options{}).WithDefaults(); o.Initial != DefaultInitial || o.Max != DefaultMax {
		t.Fatalf("defaults: %+v", o)
	}
}

func TestWaitStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if New(Options{Initial: time.Hour}).Wait(ctx) {
		t.Fatal("Wait returned true on a cancelled context")
	}
	if !New(Options{Initial: time.Millisecond}).Wait(context.Background()) {
		t.Fatal("Wait returned false")
	}
}

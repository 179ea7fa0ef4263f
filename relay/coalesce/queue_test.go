package coalesce

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// next calls q.Next with a generous deadline so a broken Queue fails the
// test instead of hanging it.
func next[K comparable](t *testing.T, q *Queue[K]) []K {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	keys, err := q.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return keys
}

func TestCoalescesRepeatedMarks(t *testing.T) {
	q := New[string](Options{Window: time.Millisecond})
	for range 1_000_000 {
		q.Mark("a")
	}
	q.Mark("b")
	if n := q.Len(); n != 2 {
		t.Fatalf("Len = %d after marking two keys many times, want 2", n)
	}
	keys := next(t, q)
	slices.Sort(keys)
	if !slices.Equal(keys, []string{"a", "b"}) {
		t.Fatalf("Next = %v, want [a b]", keys)
	}
	if n := q.Len(); n != 0 {
		t.Fatalf("Len = %d after Next, want 0", n)
	}
}

func TestMarkAll(t *testing.T) {
	q := New[int](Options{Window: time.Millisecond})
	q.MarkAll([]int{3, 1, 2, 1})
	keys := next(t, q)
	slices.Sort(keys)
	if !slices.Equal(keys, []int{1, 2, 3}) {
		t.Fatalf("Next = %v", keys)
	}
}

// TestNextWaitsForFirstMark: Next on an empty set blocks until a Mark
// arrives, then returns it.
func TestNextWaitsForFirstMark(t *testing.T) {
	q := New[int](Options{Window: time.Millisecond})
	got := make(chan []int, 1)
	go func() {
		keys, _ := q.Next(context.Background())
		got <- keys
	}()
	select {
	case keys := <-got:
		t.Fatalf("Next returned %v on an empty set", keys)
	case <-time.After(50 * time.Millisecond):
	}
	q.Mark(7)
	select {
	case keys := <-got:
		if !slices.Equal(keys, []int{7}) {
			t.Fatalf("Next = %v, want [7]", keys)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Next did not return after Mark")
	}
}

// TestWindowWaitsForQuiet: while marks keep coming faster than Window (and
// MaxDelay is far away), Next does not return; it returns after they stop.
func TestWindowWaitsForQuiet(t *testing.T) {
	q := New[int](Options{Window: 500 * time.Millisecond, MaxDelay: time.Minute})
	var stopped atomic.Bool
	go func() {
		for i := range 50 { // 50 marks 10 ms apart: well inside the window
			q.Mark(i % 5)
			time.Sleep(10 * time.Millisecond)
		}
		stopped.Store(true)
	}()
	keys := next(t, q)
	if !stopped.Load() {
		t.Fatal("Next returned while marks were still arriving within the window")
	}
	slices.Sort(keys)
	if !slices.Equal(keys, []int{0, 1, 2, 3, 4}) {
		t.Fatalf("Next = %v, want [0 1 2 3 4]", keys)
	}
}

// TestMaxDelayBoundsWait: marks that never pause do not starve the consumer:
// Next returns after MaxDelay while the producer is still marking.
func TestMaxDelayBoundsWait(t *testing.T) {
	q := New[int](Options{Window: 2 * time.Second, MaxDelay: 100 * time.Millisecond})
	done := make(chan struct{})
	var stopped atomic.Bool
	go func() {
		defer stopped.Store(true)
		for i := range 2000 { // at most 2000 × 5 ms = 10 s
			select {
			case <-done:
				return
			default:
			}
			q.Mark(i)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	keys := next(t, q)
	if stopped.Load() {
		t.Fatal("Next returned only after the producer stopped: MaxDelay ignored")
	}
	close(done)
	if len(keys) == 0 {
		t.Fatal("Next returned no keys")
	}
}

func TestNextHonoursContext(t *testing.T) {
	q := New[int](Options{Window: time.Hour})
	q.Mark(1)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := q.Next(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Next = %v, want context.Canceled", err)
	}
	if q.Len() != 1 {
		t.Fatal("cancelled Next dropped the pending key")
	}
}

// TestConcurrentProducers: every key marked by any producer is delivered
// exactly once per batch and none is lost.
func TestConcurrentProducers(t *testing.T) {
	q := New[int](Options{Window: time.Millisecond, MaxDelay: 5 * time.Millisecond})
	const producers, perProducer = 8, 500
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range perProducer {
				q.Mark(p*perProducer + i)
			}
		})
	}
	seen := make(map[int]bool)
	deadline := time.Now().Add(20 * time.Second)
	for len(seen) < producers*perProducer && time.Now().Before(deadline) {
		for _, k := range next(t, q) {
			seen[k] = true
		}
	}
	wg.Wait()
	if len(seen) != producers*perProducer {
		t.Fatalf("saw %d distinct keys, want %d", len(seen), producers*perProducer)
	}
}

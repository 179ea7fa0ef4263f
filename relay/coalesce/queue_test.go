package coalesce

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
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

// TestWindowMergesBurst: keys marked every 10 ms for less than a Window are
// each released twice: once at the leading edge (Pack after their first
// Mark) and once at the trailing edge (Window after that), all the marks in
// between merged into the second release. Fake clock (synctest).
func TestWindowMergesBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const window = 500 * time.Millisecond
		q := New[int](Options{Window: window, MaxDelay: time.Minute})
		start := time.Now()
		go func() {
			for i := range 50 { // 50 marks 10 ms apart: within one window
				q.Mark(i % 5)
				time.Sleep(10 * time.Millisecond)
			}
		}()
		rel := collect(t, q, 3*window)
		for k := range 5 {
			firstMark := time.Duration(k) * 10 * time.Millisecond
			want := []time.Duration{firstMark + DefaultPack, firstMark + DefaultPack + window}
			var got []time.Duration
			for _, at := range rel[k] {
				got = append(got, at.Sub(start))
			}
			if !slices.Equal(got, want) {
				t.Errorf("key %d released at %v, want %v (leading edge, then trailing edge)", k, got, want)
			}
		}
		if len(rel) != 5 {
			t.Errorf("released %d distinct keys, want 5", len(rel))
		}
	})
}

// collect runs Next in a loop for d of fake time and returns when each key
// was released.
func collect[K comparable](t *testing.T, q *Queue[K], d time.Duration) map[K][]time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	rel := make(map[K][]time.Time)
	for {
		keys, err := q.Next(ctx)
		if err != nil {
			return rel
		}
		now := time.Now()
		for _, k := range keys {
			rel[k] = append(rel[k], now)
		}
	}
}

// TestLoneChangeNotDelayed: a Mark after a quiet period is released after
// Pack, not after Window; so is the next one after another quiet period.
func TestLoneChangeNotDelayed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New[string](Options{Window: time.Second, MaxDelay: 10 * time.Second, Pack: 3 * time.Millisecond})
		for range 2 {
			start := time.Now()
			q.Mark("a")
			if keys := next(t, q); !slices.Equal(keys, []string{"a"}) {
				t.Fatalf("Next = %v, want [a]", keys)
			}
			if d := time.Since(start); d != 3*time.Millisecond {
				t.Fatalf("lone change released after %v, want the 3ms Pack", d)
			}
			time.Sleep(2 * time.Second) // quiet
		}
	})
}

// TestPackJoinsCloseMarks: keys marked within Pack of a leading-edge key go
// out in the same batch; a key marked after that batch is a new one.
func TestPackJoinsCloseMarks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New[string](Options{Window: time.Second, Pack: 5 * time.Millisecond})
		start := time.Now()
		go func() {
			q.Mark("a")
			time.Sleep(2 * time.Millisecond)
			q.Mark("b")
			time.Sleep(2 * time.Millisecond)
			q.Mark("c")
			time.Sleep(3 * time.Millisecond)
			q.Mark("d") // at 7 ms, after the first batch (5 ms)
		}()
		keys := next(t, q)
		slices.Sort(keys)
		if !slices.Equal(keys, []string{"a", "b", "c"}) || time.Since(start) != 5*time.Millisecond {
			t.Fatalf("first batch %v at %v, want [a b c] at 5ms", keys, time.Since(start))
		}
		keys = next(t, q)
		if !slices.Equal(keys, []string{"d"}) || time.Since(start) != 12*time.Millisecond {
			t.Fatalf("second batch %v at %v, want [d] at 12ms", keys, time.Since(start))
		}
	})
}

// TestStormOncePerWindow: under a storm of marks over a few keys, each key
// is released at most once per Window (in every fixed window of the run),
// every mark is released within Window + Pack, and none is lost.
func TestStormOncePerWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			window = 100 * time.Millisecond
			keys   = 20
			marks  = 5000 // one every 400µs: 20 windows
		)
		q := New[int](Options{Window: window, MaxDelay: time.Second})
		start := time.Now()
		rng := rand.New(rand.NewPCG(1, 2))
		marked := make(map[int][]time.Time)
		go func() {
			for range marks {
				k := rng.IntN(keys)
				marked[k] = append(marked[k], time.Now())
				q.Mark(k)
				time.Sleep(400 * time.Microsecond)
			}
		}()
		rel := collect(t, q, marks*400*time.Microsecond+3*window)
		synctest.Wait()
		if len(rel) != keys {
			t.Fatalf("released %d keys, want %d", len(rel), keys)
		}
		total := 0
		for k, times := range rel {
			total += len(times)
			perWindow := make(map[int64]int)
			for i, at := range times {
				w := int64(at.Sub(start) / window)
				if perWindow[w]++; perWindow[w] > 1 {
					t.Fatalf("key %d released %d times in window %d", k, perWindow[w], w)
				}
				if i > 0 && at.Sub(times[i-1]) < window {
					t.Fatalf("key %d released %v after its previous release, want >= %v", k, at.Sub(times[i-1]), window)
				}
			}
			// Every mark is followed by a release within Window + Pack.
			j := 0
			for _, m := range marked[k] {
				for j < len(times) && times[j].Before(m) {
					j++
				}
				if j == len(times) {
					t.Fatalf("key %d marked at %v never released after", k, m.Sub(start))
				}
				if d := times[j].Sub(m); d > window+DefaultPack {
					t.Fatalf("key %d marked at %v waited %v", k, m.Sub(start), d)
				}
			}
		}
		if max := keys * (marks*400*time.Microsecond/window + 2); total > int(max) {
			t.Fatalf("%d releases, more than %d (one per key per window)", total, max)
		}
	})
}

// TestMaxDelayBoundsTrailingEdge: a key marked again right after its
// release waits for MaxDelay when that is shorter than Window.
func TestMaxDelayBoundsTrailingEdge(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New[int](Options{Window: 2 * time.Second, MaxDelay: 100 * time.Millisecond})
		q.Mark(1)
		next(t, q)
		start := time.Now()
		q.Mark(1)
		next(t, q)
		if d := time.Since(start); d != 100*time.Millisecond {
			t.Fatalf("re-marked key released after %v, want MaxDelay (100ms)", d)
		}
	})
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

// TestUnwrittenFreesTheWindow: a release the consumer reports as having
// written nothing does not hold the key's next change for the Window.
func TestUnwrittenFreesTheWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := New[string](Options{Window: time.Second, Pack: time.Millisecond})
		q.Mark("a")
		next(t, q)
		q.Mark("a") // within the window: trailing edge
		start := time.Now()
		q.Unwritten("a")
		next(t, q)
		if d := time.Since(start); d != time.Millisecond {
			t.Fatalf("pending key released %v after Unwritten, want the 1ms Pack", d)
		}
		// Written this time: the next Mark waits for the window again.
		q.Mark("a")
		start = time.Now()
		next(t, q)
		if d := time.Since(start); d < 900*time.Millisecond {
			t.Fatalf("written key re-released after %v, want the rest of the 1s window", d)
		}
		q.Unwritten("a")
		q.Mark("a") // leading edge again
		start = time.Now()
		next(t, q)
		if d := time.Since(start); d != time.Millisecond {
			t.Fatalf("key marked after Unwritten released after %v, want 1ms", d)
		}
	})
}

// TestTrailingEdgeCountsFromRelease: a key marked again 90 ms after its
// release within a 100 ms Window waits only the 10 ms left of that Window,
// not a Window of its own.
func TestTrailingEdgeCountsFromRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const window = 100 * time.Millisecond
		q := New[string](Options{Window: window, MaxDelay: time.Minute})
		q.Mark("svc")
		next(t, q)
		released := time.Now()
		time.Sleep(90 * time.Millisecond)
		q.Mark("svc")
		marked := time.Now()
		if got := next(t, q); !slices.Equal(got, []string{"svc"}) {
			t.Fatalf("released %v, want [svc]", got)
		}
		if waited, since := time.Since(marked), time.Since(released); waited != 10*time.Millisecond || since != window {
			t.Errorf("released %v after the mark, %v after the previous release; want 10ms and %v", waited, since, window)
		}
	})
}

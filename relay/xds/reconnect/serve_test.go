package reconnect

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc"
)

// idleStream is a bidirectional stream that never receives anything until
// its context ends, and accepts every send.
type idleStream struct {
	grpc.ClientStream
	ctx context.Context
}

func (s idleStream) Send(*int) error { return nil }
func (s idleStream) Recv() (*int, error) {
	<-s.ctx.Done()
	return nil, s.ctx.Err()
}

// TestSyncTickNotBeforeStartPlusTimeout: the sync timer fires no earlier
// than syncTimeout after start returned, however long start took. The
// clients note the stream's opening time in start and fire their sync
// timeout only once; a tick that came before opening+syncTimeout found the
// timeout not passed and the stream never became complete.
func TestSyncTickNotBeforeStartPlusTimeout(t *testing.T) {
	const syncTimeout = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var opened, ticked time.Time
	open := func(ctx context.Context, _ ...grpc.CallOption) (grpc.BidiStreamingClient[int, int], error) {
		return idleStream{ctx: ctx}, nil
	}
	err := Serve(ctx, NewMetrics(nil), NewHealth(time.Now(), nil), syncTimeout, open,
		func(*Requests[*int], *time.Timer) {
			time.Sleep(syncTimeout / 2) // a slow start, as on a loaded machine
			opened = time.Now()
		},
		func(context.Context, *int, time.Time) { t.Error("unexpected response") },
		func(_ context.Context, now time.Time) {
			ticked = now
			cancel()
		},
		nil, nil)
	if ctx.Err() == nil {
		t.Fatalf("Serve ended before the tick: %v", err)
	}
	if d := ticked.Sub(opened); d < syncTimeout {
		t.Errorf("sync timer fired %v after start noted the opening, want at least %v", d, syncTimeout)
	}
}

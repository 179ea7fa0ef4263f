package reconnect

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
)

// Serve runs one stream: it opens it with open, starts its Pump and the
// stream's sync timer (firing syncTimeout after start returned; the client
// may stop or reset it), lets start queue the first requests, marks m connected, and
// then hands every response to handle and every firing of the sync timer to
// tick, and every receive from wake (nil: never) to woken, all from the
// calling goroutine, until the stream fails or ctx is
// done. It returns the error that ended the stream; the Pump and the timer
// are stopped before it returns.
func Serve[Req, Resp any](ctx context.Context, m *Metrics, h *Health, syncTimeout time.Duration,
	open func(context.Context, ...grpc.CallOption) (grpc.BidiStreamingClient[Req, Resp], error),
	start func(out *Requests[*Req], sync *time.Timer),
	handle func(ctx context.Context, msg *Resp, at time.Time),
	tick func(context.Context, time.Time),
	wake <-chan struct{}, woken func(context.Context, time.Time)) error {
	sctx, cancelCause := context.WithCancelCause(ctx)
	cancel := func() { cancelCause(nil) }
	defer cancel()
	h.SetStreamCancel(cancelCause)
	defer h.SetStreamCancel(nil)
	st, err := open(sctx)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	// One goroutine receives, one sends, and this one handles: receiving
	// never waits on a send (Send). Stopping the pump before the next
	// stream makes sure both are gone.
	pump := StartPump[*Req](sctx, st.Recv, st.Send)
	defer func() {
		cancel()
		pump.Stop()
	}()
	sync := time.NewTimer(syncTimeout)
	defer sync.Stop()
	start(pump.Requests, sync)
	// Armed again after start, which notes when the stream opened: the
	// timer must not fire before that time + syncTimeout, or a tick that
	// finds the timeout not yet passed would never come again.
	sync.Reset(syncTimeout)
	defer m.StreamOpened()()
	h.SetConnected(true, time.Now())
	defer func() { h.SetConnected(false, time.Now()) }()

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-pump.Ended:
			if cause := context.Cause(sctx); ctx.Err() == nil && errors.Is(cause, ErrReconnect) {
				return cause // Reconnect ended the stream, not a failure
			}
			return err
		case r := <-pump.Responses:
			handle(ctx, r.Msg, r.At)
		case now := <-sync.C:
			tick(ctx, now)
		case <-wake:
			woken(ctx, time.Now())
		}
	}
}

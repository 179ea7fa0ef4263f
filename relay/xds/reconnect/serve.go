package reconnect

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
)

// Serve runs one stream: it opens it with open, starts its Pump, lets start
// queue the first requests (start returns the channel of the stream's sync
// timer), marks m connected, and then hands every response to handle and
// every tick of the sync timer to tick, all from the calling goroutine,
// until the stream fails or ctx is done. It returns the error that ended
// the stream; the Pump is stopped before it returns.
func Serve[Req, Resp any](ctx context.Context, m *Metrics,
	open func(context.Context, ...grpc.CallOption) (grpc.BidiStreamingClient[Req, Resp], error),
	start func(out *Requests[*Req]) (sync <-chan time.Time),
	handle func(context.Context, Received[*Resp]),
	tick func(context.Context, time.Time)) error {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
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
	sync := start(pump.Requests)
	defer m.StreamOpened()()

	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-pump.Ended:
			return err
		case r := <-pump.Responses:
			handle(ctx, r)
		case now := <-sync:
			tick(ctx, now)
		}
	}
}

package reconnect

import (
	"context"
	"fmt"
	"sync"
)

// Pump is one stream's two goroutines: one receives (Receive) into
// Responses, one sends what is put into Requests (Send). The goroutine
// handling responses only reads Responses and puts into Requests, so it
// never waits on the network. Stop it before the next stream.
type Pump[Req, Resp any] struct {
	// Requests are the requests not sent yet, latest per type URL.
	Requests *Requests[Req]
	// Responses carries every response in order, unbuffered: memory stays
	// bounded by gRPC flow control.
	Responses <-chan Received[Resp]
	// Ended receives why the stream ended (receive or send failed).
	Ended <-chan error

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// StartPump starts the goroutines of a stream with recv and send. They run
// until the stream fails, ctx ends, or Stop.
func StartPump[Req, Resp any](ctx context.Context, recv func() (Resp, error), send func(Req) error) *Pump[Req, Resp] {
	ctx, cancel := context.WithCancel(ctx)
	responses := make(chan Received[Resp])
	ended := make(chan error, 2)
	p := &Pump[Req, Resp]{Requests: NewRequests[Req](), Responses: responses, Ended: ended, cancel: cancel}
	p.wg.Go(func() { ended <- Receive(ctx, recv, responses) })
	p.wg.Go(func() {
		if err := Send(ctx, p.Requests, send); err != nil {
			ended <- fmt.Errorf("send: %w", err)
		}
	})
	return p
}

// Stop ends both goroutines and waits for them. The stream's context must
// be cancelled too (by the caller) for a blocked Recv or Send to return.
func (p *Pump[Req, Resp]) Stop() {
	p.cancel()
	p.wg.Wait()
}

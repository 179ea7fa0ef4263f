package reconnect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Received is one message and when it arrived.
type Received[T any] struct {
	Msg T
	At  time.Time
}

// Receive reads messages with recv into out until recv fails or ctx ends,
// and returns why it ended. out should be unbuffered: order is kept and
// memory stays bounded by gRPC flow control.
func Receive[T any](ctx context.Context, recv func() (T, error), out chan<- Received[T]) error {
	for {
		m, err := recv()
		if errors.Is(err, io.EOF) {
			return errors.New("stream closed by server")
		}
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		select {
		case out <- Received[T]{Msg: m, At: time.Now()}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

package reconnect

import (
	"context"

	"github.com/meshrelay/meshrelay/internal/mailbox"
)

// Requests are the requests of one stream not sent yet, one per type URL:
// a newer request of a type replaces one still waiting. In both SotW and
// delta xDS the newest request of a type says everything an older one did
// (SotW requests carry the full name set; Istiod ignores ACKs and NACKs of
// a nonce older than the last it sent), so nothing is lost.
type Requests[T any] = mailbox.Mailbox[string, T]

// NewRequests returns an empty Requests.
func NewRequests[T any]() *Requests[T] { return mailbox.New[string, T]() }

// Send sends the requests of reqs with send, oldest type first, until send
// fails (its error) or ctx ends (ctx.Err()). Run it on a goroutine of its
// own: the goroutine receiving and handling responses then only puts into
// reqs and never waits on a send blocked by gRPC flow control. Otherwise a
// client blocked sending a large ACK stops receiving, and a server blocked
// sending to it stops reading its requests: a deadlock.
func Send[T any](ctx context.Context, reqs *Requests[T], send func(T) error) error {
	for {
		for {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r, ok := reqs.Pop()
			if !ok {
				break
			}
			if err := send(r); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-reqs.Ready():
		}
	}
}

package delta

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"
)

// Update is what one accepted response (or the sync timeout) changed. It has
// the shape of sotw.Update, so that the relay feeds both to the same pipeline.
type Update struct {
	// TypeURL is AddressType or AuthorizationType. It is empty for an
	// update that only reports completeness reached by Options.SyncTimeout
	// (Upserted and Removed are then empty).
	TypeURL string
	// Upserted holds the resources added or whose content changed, by
	// resource name, typed (*workloadapi.Address, *security.Authorization).
	// The messages are shared with the client's cache: never mutate them.
	Upserted map[string]proto.Message
	// Removed lists, sorted, the held names Istiod removed.
	Removed []string
	// Complete reports that the state of every type is complete on the
	// current stream as of this update. Once true on a stream it stays true
	// for every later update on that stream; a reconnect resets it.
	Complete bool
	// ReceivedAt is when the response arrived (for propagation lag).
	ReceivedAt time.Time
}

// empty reports whether the update changes nothing.
func (u *Update) empty() bool {
	return len(u.Upserted) == 0 && len(u.Removed) == 0
}

// Handler consumes Updates. OnUpdate is called sequentially from the
// goroutine running Client.Run, in the order the changes happened; it must
// not block for long.
type Handler interface {
	OnUpdate(ctx context.Context, u Update)
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ctx context.Context, u Update)

// OnUpdate calls f.
func (f HandlerFunc) OnUpdate(ctx context.Context, u Update) { f(ctx, u) }

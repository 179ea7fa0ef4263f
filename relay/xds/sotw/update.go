package sotw

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"
)

// Update is what one accepted response (or the sync timeout) changed. It is
// the whole contract between this package and the relay's translator.
type Update struct {
	// TypeURL is the resource type the update is about, one of
	// resource.ClusterType, ListenerType, EndpointType and RouteType. It is
	// empty for an update that only reports completeness reached by
	// Options.SyncTimeout (Upserted and Removed are then empty).
	TypeURL string
	// Upserted holds the resources added or whose content changed, by name,
	// typed (*clusterv3.Cluster, *listenerv3.Listener,
	// *endpointv3.ClusterLoadAssignment, *routev3.RouteConfiguration). The
	// messages are shared with the client's cache: never mutate them.
	Upserted map[string]proto.Message
	// Removed lists, sorted, the names deleted: for CDS and LDS those missing
	// from a response, for EDS and RDS those no longer subscribed.
	Removed []string
	// Complete reports that the state of every type is complete on the
	// current stream as of this update: a consumer may now delete whatever
	// it holds that the client does not. Once true on a stream it stays true
	// for every later update on that stream; a reconnect resets it.
	Complete bool
	// NewlyComplete marks the one update per stream that made it complete:
	// the complete state of a fresh stream, even when nothing changed
	// since the previous stream.
	NewlyComplete bool
	// ReceivedAt is when the response arrived (for propagation lag).
	ReceivedAt time.Time
}

// empty reports whether the update changes nothing.
func (u *Update) empty() bool {
	return len(u.Upserted) == 0 && len(u.Removed) == 0
}

// Handler consumes Updates. OnUpdate is called sequentially from the goroutine
// running Client.Run, in the order the changes happened; it must not block for
// long, since Istiod keeps pushing meanwhile and gRPC flow control will
// eventually stall the stream.
type Handler interface {
	OnUpdate(ctx context.Context, u Update)
}

// HandlerFunc adapts a function to a Handler.
type HandlerFunc func(ctx context.Context, u Update)

// OnUpdate calls f.
func (f HandlerFunc) OnUpdate(ctx context.Context, u Update) { f(ctx, u) }

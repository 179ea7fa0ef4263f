package measure

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc/stats"
)

// ByteCounter is a gRPC stats handler that counts the bytes a client
// receives on the wire (message payloads and their gRPC framing): what a
// node downloads from Istiod (direct mode) or from etcd (relay mode).
type ByteCounter struct {
	// Received counts the bytes received.
	Received atomic.Int64
}

var _ stats.Handler = (*ByteCounter)(nil)

func (b *ByteCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (b *ByteCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if in, ok := s.(*stats.InPayload); ok {
		b.Received.Add(int64(in.WireLength))
	}
}

func (b *ByteCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (b *ByteCounter) HandleConn(context.Context, stats.ConnStats) {}

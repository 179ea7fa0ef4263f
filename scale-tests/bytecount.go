package main

import (
	"context"
	"sync/atomic"

	"google.golang.org/grpc/stats"
)

// byteCounter is a gRPC stats handler that counts the bytes a client
// receives on the wire (message payloads and their gRPC framing): what a
// node downloads from Istiod (direct mode) or from etcd (relay mode).
type byteCounter struct {
	received atomic.Int64
}

var _ stats.Handler = (*byteCounter)(nil)

func (b *byteCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (b *byteCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	if in, ok := s.(*stats.InPayload); ok {
		b.received.Add(int64(in.WireLength))
	}
}

func (b *byteCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (b *byteCounter) HandleConn(context.Context, stats.ConnStats) {}

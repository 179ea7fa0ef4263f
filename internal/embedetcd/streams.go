package embedetcd

import (
	"context"

	"google.golang.org/grpc"
)

// streamCanceller ends every open gRPC stream (watches, lease keep-alives)
// when the server closes. Without it etcd's graceful stop waits its whole
// request timeout (7 s) for clients' watches to end by themselves, which
// makes every restart in a test, and the relay's shutdown, slow.
type streamCanceller struct {
	ctx    context.Context // done when Close begins
	cancel context.CancelFunc
}

func newStreamCanceller() *streamCanceller {
	ctx, cancel := context.WithCancel(context.Background())
	return &streamCanceller{ctx: ctx, cancel: cancel}
}

// intercept is a grpc.StreamServerInterceptor giving each stream a context
// that also ends when the canceller does.
func (sc *streamCanceller) intercept(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	stop := context.AfterFunc(sc.ctx, cancel)
	defer stop()
	return handler(srv, &cancellableStream{ServerStream: ss, ctx: ctx})
}

type cancellableStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *cancellableStream) Context() context.Context { return s.ctx }

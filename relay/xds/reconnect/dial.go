package reconnect

import (
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/meshrelay/meshrelay/internal/backoff"
)

// Keepalive of the gRPC client: ping after KeepaliveTime without activity,
// drop the connection when the ping is not answered in KeepaliveTimeout.
// Istiod permits pings every 15 s.
const (
	KeepaliveTime    = 30 * time.Second
	KeepaliveTimeout = 10 * time.Second
)

// DialOptions are the gRPC options of an upstream xDS client (insecure
// transport, maxRecv, keepalive, and a connect backoff no longer than bo's)
// followed by extra, which therefore win (e.g. TLS credentials).
func DialOptions(maxRecv int, bo backoff.Options, extra ...grpc.DialOption) []grpc.DialOption {
	bo = bo.WithDefaults()
	own := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxRecv)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: KeepaliveTime, Timeout: KeepaliveTimeout}),
		// gRPC's own reconnect backoff (default up to 120 s) must not
		// outlast ours.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: bo.Initial, Multiplier: 2, Jitter: 0.2, MaxDelay: bo.Max},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	return append(own, extra...)
}

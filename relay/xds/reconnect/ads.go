package reconnect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"

	"github.com/meshrelay/meshrelay/internal/backoff"
)

// Upstream is where and how a client connects to Istiod, and runs its
// streams (Run). Set its fields before the first Run; do not copy it after.
type Upstream struct {
	// Name prefixes Run's errors ("sotw", "delta").
	Name string
	// Address is Istiod's xDS address as a gRPC target.
	Address string
	// MaxRecvMsgSize is the largest response accepted, in bytes.
	MaxRecvMsgSize int
	// Backoff bounds the delay between streams and gRPC's own reconnects.
	Backoff backoff.Options
	// DialOptions are applied after DialOptions' own, so they win.
	DialOptions []grpc.DialOption

	running sync.Mutex // held while Run runs
}

// Run builds a gRPC client for u and runs stream on its ADS client with Loop
// until ctx is done; every stream's end is recorded in m. It returns
// ctx.Err(), or an error at once if the gRPC client cannot be built or Run
// is already running. Run may be called again after it returned.
func (u *Upstream) Run(ctx context.Context, log *slog.Logger, m *Metrics,
	stream func(context.Context, discoveryv3.AggregatedDiscoveryServiceClient) (healthy bool, err error)) error {
	if !u.running.TryLock() {
		return errors.New(u.Name + ": Run is already running")
	}
	defer u.running.Unlock()
	conn, err := grpc.NewClient(u.Address, DialOptions(u.MaxRecvMsgSize, u.Backoff, u.DialOptions...)...)
	if err != nil {
		return fmt.Errorf("%s: grpc client for %s: %w", u.Name, u.Address, err)
	}
	defer conn.Close()
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	return Loop(ctx, log, u.Address, u.Backoff,
		func(ctx context.Context) (bool, error) { return stream(ctx, ads) },
		func(err error) { m.SetError(err, time.Now()) })
}

package delta

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/meshrelay/meshrelay/relay/xds/sotw"
)

// DefaultSyncTimeout bounds how long a reconnected stream waits for a type
// that Istiod has no difference to send before calling the state complete.
// It applies only to types already received on an earlier stream.
const DefaultSyncTimeout = 5 * time.Second

// Options configure a Client. Zero values mean the documented defaults.
type Options struct {
	// Address is Istiod's xDS address as a gRPC target. Required.
	Address string
	// Node is the identity sent on the first request of each type; see
	// NodeFromEnv. Required. The client works on a copy.
	Node *corev3.Node
	// DialOptions are applied after the client's own (insecure transport,
	// MaxRecvMsgSize, keepalive, connect backoff), so they win.
	DialOptions []grpc.DialOption
	// MaxRecvMsgSize is the largest response accepted, in bytes. Default
	// sotw.DefaultMaxRecvMsgSize (256 MiB).
	MaxRecvMsgSize int
	// Backoff bounds the delay between streams.
	Backoff BackoffOptions
	// SyncTimeout: see DefaultSyncTimeout. Default DefaultSyncTimeout.
	SyncTimeout time.Duration
	// Logger receives connect/disconnect and NACK logs. Default: discard.
	Logger *slog.Logger
}

// Validate checks that o can make a Client.
func (o Options) Validate() error {
	if o.Address == "" {
		return errors.New("options: Address is required")
	}
	if o.Node == nil {
		return errors.New("options: Node is required (see NodeFromEnv)")
	}
	if err := sotw.ValidateNode(o.Node); err != nil {
		return fmt.Errorf("options: %w", err)
	}
	if o.MaxRecvMsgSize < 0 || o.SyncTimeout < 0 {
		return errors.New("options: negative MaxRecvMsgSize or SyncTimeout")
	}
	return nil
}

// withDefaults returns o validated, with defaults filled in and the node
// copied.
func (o Options) withDefaults() (Options, error) {
	if err := o.Validate(); err != nil {
		return o, err
	}
	o.Node = proto.Clone(o.Node).(*corev3.Node)
	if o.MaxRecvMsgSize == 0 {
		o.MaxRecvMsgSize = sotw.DefaultMaxRecvMsgSize
	}
	o.Backoff = o.Backoff.WithDefaults()
	if o.SyncTimeout == 0 {
		o.SyncTimeout = DefaultSyncTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

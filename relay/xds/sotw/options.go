package sotw

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshrelay/meshrelay/relay/xds/reconnect"
)

// Defaults for Options.
const (
	// DefaultMaxRecvMsgSize is well above gRPC's 4 MiB default: Istiod sends
	// larger responses in big clusters.
	DefaultMaxRecvMsgSize = 256 << 20
	// DefaultSyncTimeout bounds how long the client waits for EDS and RDS
	// names Istiod may never answer before calling the state complete.
	DefaultSyncTimeout = 5 * time.Second
	// DefaultKeepaliveTime and DefaultKeepaliveTimeout are the gRPC client
	// keepalive (see reconnect.DialOptions).
	DefaultKeepaliveTime    = reconnect.KeepaliveTime
	DefaultKeepaliveTimeout = reconnect.KeepaliveTimeout
)

// Options configure a Client. Zero values mean the documented defaults.
type Options struct {
	// Address is Istiod's xDS address as a gRPC target, e.g.
	// "istiod.istio-system.svc:15010". Required.
	Address string
	// Node is the identity sent on every request; see NodeFromEnv. Required.
	// The client works on a copy.
	Node *corev3.Node
	// NodeID, when set, replaces Node's id.
	NodeID string
	// NodeMetadata entries are set into Node's metadata, replacing entries
	// of the same key. Values are anything structpb.NewValue accepts.
	NodeMetadata map[string]any
	// DialOptions are applied after the client's own (insecure transport,
	// MaxRecvMsgSize, keepalive, connect backoff), so they win: pass
	// grpc.WithTransportCredentials here for TLS on 15012.
	DialOptions []grpc.DialOption
	// MaxRecvMsgSize is the largest response accepted, in bytes. Default
	// DefaultMaxRecvMsgSize (256 MiB).
	MaxRecvMsgSize int
	// Backoff bounds the delay between streams.
	Backoff BackoffOptions
	// SyncTimeout: a stream's state is complete when CDS and LDS were
	// accepted and every subscribed EDS and RDS name was received, or, for
	// names Istiod has nothing for, when SyncTimeout passed since the latest
	// subscription change. Default DefaultSyncTimeout (5 s).
	SyncTimeout time.Duration
	// EDSFilter, when set, chooses the EDS clusters to subscribe to: only
	// the assignments of clusters it returns true for are requested (a
	// relay replica subscribes to the clusters of the shards it leads).
	// Call Client.Resubscribe when its answers change. It is called from
	// the goroutine running Run.
	EDSFilter func(name string, c *clusterv3.Cluster) bool
	// Logger receives connect/disconnect, NACK and subscription logs.
	// Default: discard.
	Logger *slog.Logger
}

// Validate reports missing required fields and out-of-range values. The
// node itself is checked by ValidateNode once NodeID and NodeMetadata are
// applied (New does).
func (o Options) Validate() error {
	switch {
	case o.Address == "":
		return errors.New("options: Address is required")
	case o.Node == nil:
		return errors.New("options: Node is required (see NodeFromEnv)")
	case o.MaxRecvMsgSize < 0:
		return fmt.Errorf("options: MaxRecvMsgSize %d: want >= 0", o.MaxRecvMsgSize)
	case o.SyncTimeout < 0:
		return fmt.Errorf("options: SyncTimeout %v: want >= 0", o.SyncTimeout)
	}
	return nil
}

// withDefaults returns o with defaults filled in and the node resolved.
func (o Options) withDefaults() (Options, error) {
	if err := o.Validate(); err != nil {
		return o, err
	}
	node, err := OverrideNode(o.Node, o.NodeID, o.NodeMetadata)
	if err != nil {
		return o, fmt.Errorf("options: %w", err)
	}
	if err := ValidateNode(node); err != nil {
		return o, fmt.Errorf("options: %w", err)
	}
	o.Node = node
	if o.MaxRecvMsgSize <= 0 {
		o.MaxRecvMsgSize = DefaultMaxRecvMsgSize
	}
	o.Backoff = o.Backoff.WithDefaults()
	if o.SyncTimeout <= 0 {
		o.SyncTimeout = DefaultSyncTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

// OverrideNode returns a copy of node with its id replaced by id when id is
// set, and metadata's entries set into its metadata (values are anything
// structpb.NewValue accepts). The relay applies --node-id and
// --node-metadata with it in both modes.
func OverrideNode(node *corev3.Node, id string, metadata map[string]any) (*corev3.Node, error) {
	node = proto.Clone(node).(*corev3.Node)
	if id != "" {
		node.Id = id
	}
	if len(metadata) > 0 {
		if node.Metadata == nil {
			node.Metadata = &structpb.Struct{}
		}
		if node.Metadata.Fields == nil {
			node.Metadata.Fields = map[string]*structpb.Value{}
		}
		for k, v := range metadata {
			sv, err := structpb.NewValue(v)
			if err != nil {
				return nil, fmt.Errorf("node metadata %q: %w", k, err)
			}
			node.Metadata.Fields[k] = sv
		}
	}
	return node, nil
}

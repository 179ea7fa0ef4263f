package delta

import (
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshrelay/meshrelay/relay/xds/sotw"
)

// ProxyType is the proxy type of the node identity: Istiod serves the
// workload API to ztunnel nodes.
const ProxyType = "ztunnel"

// NodeFromEnv builds the identity the relay presents to Istiod in workload
// mode, as a ztunnel of the relay's own pod:
//
//	id:       ztunnel~<POD_IP>~<POD_NAME>.<POD_NAMESPACE>~<POD_NAMESPACE>.svc.cluster.local
//	metadata: those of sotw.NodeFromEnv (ISTIO_VERSION, NAMESPACE, CLUSTER_ID,
//	          LABELS, NAME, INSTANCE_IPS, SERVICE_ACCOUNT when set), plus
//	          NODE_NAME (from NODE_NAME, when set)
//
// It reads the same environment variables as sotw.NodeFromEnv, and NODE_NAME.
// New checks the result with sotw.ValidateNode.
func NodeFromEnv(getenv func(string) string, clusterID string) *corev3.Node {
	n := sotw.NodeFromEnv(getenv, clusterID)
	if _, rest, ok := strings.Cut(n.Id, "~"); ok {
		n.Id = ProxyType + "~" + rest
	}
	if node := strings.TrimSpace(getenv("NODE_NAME")); node != "" {
		n.Metadata.Fields["NODE_NAME"] = structpb.NewStringValue(node)
	}
	return n
}

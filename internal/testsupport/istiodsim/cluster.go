package istiodsim

import (
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Names of the clusters Istiod sends on every proxy besides the service
// clusters. Consumers of service data must ignore them.
const (
	BlackHoleCluster          = "BlackHoleCluster"
	PassthroughCluster        = "PassthroughCluster"
	InboundPassthroughCluster = "InboundPassthroughCluster"
)

// subsetName is the DestinationRule subset of the subset clusters generated
// with Options.SubsetClusters.
const subsetName = "v1"

// ClusterName is Istio's name of the outbound cluster of a service port:
// outbound|<port>|<subset>|<hostname>, subset empty for the service's own
// cluster.
func ClusterName(port uint32, subset, hostname string) string {
	return "outbound|" + strconv.FormatUint(uint64(port), 10) + "|" + subset + "|" + hostname
}

// adsConfigSource is the config source Istiod puts in EDS clusters and RDS
// listeners: "fetch it over the same ADS stream".
func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

// serviceCluster is the EDS cluster of one port (and optional subset) of
// svc, with the filter metadata Istiod attaches to outbound clusters.
func serviceCluster(svc *service, port Port, subset string) *clusterv3.Cluster {
	name := ClusterName(port.Port, subset, svc.hostname)
	istio := &structpb.Struct{Fields: map[string]*structpb.Value{
		"services": structpb.NewListValue(&structpb.ListValue{Values: []*structpb.Value{
			structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
				"host":      structpb.NewStringValue(svc.hostname),
				"name":      structpb.NewStringValue(svc.name),
				"namespace": structpb.NewStringValue(svc.namespace),
			}}),
		}}),
		"default_original_port": structpb.NewNumberValue(float64(port.Port)),
	}}
	if subset != "" {
		istio.Fields["subset"] = structpb.NewStringValue(subset)
	}
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			EdsConfig:   adsConfigSource(),
			ServiceName: name,
		},
		ConnectTimeout: durationpb.New(10 * time.Second),
		LbPolicy:       clusterv3.Cluster_ROUND_ROBIN,
		Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			"istio": istio,
		}},
	}
}

// staticClusters are the non-service clusters Istiod sends to every proxy.
func staticClusters() []*clusterv3.Cluster {
	originalDst := func(name string) *clusterv3.Cluster {
		return &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
			ConnectTimeout:       durationpb.New(10 * time.Second),
			LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		}
	}
	return []*clusterv3.Cluster{
		{
			Name:                 BlackHoleCluster,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:       durationpb.New(10 * time.Second),
		},
		originalDst(PassthroughCluster),
		originalDst(InboundPassthroughCluster),
	}
}

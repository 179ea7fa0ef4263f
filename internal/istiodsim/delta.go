package istiodsim

import (
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DeltaAggregatedResources is not served yet. Istio's ambient workload API
// (WDS) is delta-only; when it is simulated, its stream type lives here
// beside sotwStream and shares the Sim's snapshots and push queue.
func (a *adsServer) DeltaAggregatedResources(grpc.BidiStreamingServer[discoveryv3.DeltaDiscoveryRequest, discoveryv3.DeltaDiscoveryResponse]) error {
	return status.Error(codes.Unimplemented, "istiodsim: delta ADS is not implemented")
}

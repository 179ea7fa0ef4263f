package istiodsim

import (
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// HTTPListener is the name of the outbound HTTP listener whose routes come
// from the RDS route configuration HTTPRoute.
const HTTPListener = "0.0.0.0_80"

// ListenerName is Istio's name of the outbound listener of a service VIP
// and port: <vip>_<port>.
func ListenerName(vip string, port uint32) string { return fmt.Sprintf("%s_%d", vip, port) }

// outboundListener is a TCP listener on vip:port proxying to cluster.
func outboundListener(vip string, port uint32, cluster string) *listenerv3.Listener {
	proxy := mustAny(&tcpproxyv3.TcpProxy{
		StatPrefix:       cluster,
		ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster},
	})
	return &listenerv3.Listener{
		Name:    ListenerName(vip, port),
		Address: socketAddress(vip, port),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.tcp_proxy",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: proxy},
			}},
		}},
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		BindToPort:       wrapperspb.Bool(false),
	}
}

// httpListener is the 0.0.0.0_80 listener whose HTTP connection manager
// takes its routes from RDS route configuration HTTPRoute.
func httpListener() *listenerv3.Listener {
	router := mustAny(&routerv3.Router{})
	hcm := mustAny(&hcmv3.HttpConnectionManager{
		StatPrefix: "outbound_" + HTTPListener,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: HTTPRoute,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router},
		}},
	})
	return &listenerv3.Listener{
		Name:    HTTPListener,
		Address: socketAddress("0.0.0.0", 80),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
			}},
		}},
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		BindToPort:       wrapperspb.Bool(false),
	}
}

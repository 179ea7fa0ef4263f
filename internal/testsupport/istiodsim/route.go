package istiodsim

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// HTTPRoute is the name of the RDS route configuration of HTTP port 80.
const HTTPRoute = "80"

// httpPort is the service port whose services get a virtual host in
// HTTPRoute.
const httpPort = 80

// virtualHost is the virtual host of svc's port 80 in HTTPRoute, with the
// domains Istiod generates: hostname, <name>.<ns>.svc, <name>.<ns> and the
// VIP, each bare and with ":80".
func virtualHost(svc *service) *routev3.VirtualHost {
	cluster := ClusterName(httpPort, "", svc.hostname)
	var domains []string
	for _, d := range []string{svc.hostname, svc.name + "." + svc.namespace + ".svc", svc.name + "." + svc.namespace, svc.vip} {
		domains = append(domains, d, d+":80")
	}
	return &routev3.VirtualHost{
		Name:    svc.hostname + ":80",
		Domains: domains,
		Routes: []*routev3.Route{{
			Name:  "default",
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
			}},
		}},
	}
}

// routeConfiguration is HTTPRoute: the services' virtual hosts followed by
// Istio's catch-all "allow_any" virtual host to PassthroughCluster.
func routeConfiguration(vhosts []*routev3.VirtualHost) *routev3.RouteConfiguration {
	all := make([]*routev3.VirtualHost, 0, len(vhosts)+1)
	all = append(all, vhosts...)
	all = append(all, &routev3.VirtualHost{
		Name:    "allow_any",
		Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Name:  "allow_any",
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: PassthroughCluster},
			}},
		}},
	})
	return &routev3.RouteConfiguration{Name: HTTPRoute, VirtualHosts: all, ValidateClusters: wrapperspb.Bool(false)}
}

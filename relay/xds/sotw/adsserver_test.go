package sotw

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// waitFor bounds every wait in this package's tests.
const waitFor = 20 * time.Second

// adsServer is a minimal ADS server on loopback: it records the requests of
// every stream and sends what the test scripts.
type adsServer struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	addr    string
	srv     *grpc.Server
	streams chan *serverStream
}

// serverStream is one client stream as the server sees it.
type serverStream struct {
	reqs  chan *discoveryv3.DiscoveryRequest // every request, in order
	resps chan *discoveryv3.DiscoveryResponse
	end   chan error // ends the stream with this error

	mu  sync.Mutex
	all []*discoveryv3.DiscoveryRequest
}

// startADS serves on addr ("127.0.0.1:0" for any port) until the test ends.
func startADS(t *testing.T, addr string) *adsServer {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen %s: %v", addr, err)
	}
	a := &adsServer{addr: lis.Addr().String(), srv: grpc.NewServer(), streams: make(chan *serverStream, 16)}
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(a.srv, a)
	go a.srv.Serve(lis)
	t.Cleanup(a.srv.Stop)
	return a
}

func (a *adsServer) StreamAggregatedResources(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	ss := &serverStream{
		reqs:  make(chan *discoveryv3.DiscoveryRequest, 1024),
		resps: make(chan *discoveryv3.DiscoveryResponse, 16),
		end:   make(chan error, 1),
	}
	a.streams <- ss
	go func() {
		for {
			req, err := st.Recv()
			if err != nil {
				return
			}
			ss.mu.Lock()
			ss.all = append(ss.all, req)
			ss.mu.Unlock()
			select {
			case ss.reqs <- req:
			case <-st.Context().Done():
				return
			}
		}
	}()
	for {
		select {
		case r := <-ss.resps:
			if err := st.Send(r); err != nil {
				return err
			}
		case err := <-ss.end:
			return err
		case <-st.Context().Done():
			return st.Context().Err()
		}
	}
}

// nextStream waits for the client to open a stream.
func (a *adsServer) nextStream(t *testing.T) *serverStream {
	t.Helper()
	select {
	case ss := <-a.streams:
		return ss
	case <-time.After(waitFor):
		t.Fatal("no stream opened")
		return nil
	}
}

// next returns the next request the client sent on this stream.
func (ss *serverStream) next(t *testing.T) *discoveryv3.DiscoveryRequest {
	t.Helper()
	select {
	case req := <-ss.reqs:
		return req
	case <-time.After(waitFor):
		t.Fatal("no request received")
		return nil
	}
}

// requests returns every request received so far.
func (ss *serverStream) requests() []*discoveryv3.DiscoveryRequest {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return append([]*discoveryv3.DiscoveryRequest(nil), ss.all...)
}

// push sends a response of typeURL holding msgs.
func (ss *serverStream) push(t *testing.T, typeURL, version, nonce string, msgs ...proto.Message) {
	t.Helper()
	var res []*anypb.Any
	for _, m := range msgs {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		res = append(res, a)
	}
	ss.pushAny(typeURL, version, nonce, res...)
}

// pushAny sends a response holding exactly res.
func (ss *serverStream) pushAny(typeURL, version, nonce string, res ...*anypb.Any) {
	ss.resps <- &discoveryv3.DiscoveryResponse{TypeUrl: typeURL, VersionInfo: version, Nonce: nonce, Resources: res}
}

// recorder is a Handler that queues the Updates it gets.
type recorder struct{ ch chan Update }

func newRecorder() *recorder { return &recorder{ch: make(chan Update, 256)} }

func (r *recorder) OnUpdate(_ context.Context, u Update) { r.ch <- u }

func (r *recorder) next(t *testing.T) Update {
	t.Helper()
	select {
	case u := <-r.ch:
		return u
	case <-time.After(waitFor):
		t.Fatal("no update")
		return Update{}
	}
}

// startClient runs a client against addr until the test ends.
func startClient(t *testing.T, addr string, opts Options) (*Client, *recorder) {
	t.Helper()
	opts.Address = addr
	if opts.Node == nil {
		opts.Node = NodeFromEnv(func(string) string { return "" }, "")
	}
	if opts.Backoff.Initial == 0 {
		opts.Backoff = BackoffOptions{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	}
	rec := newRecorder()
	c, err := New(opts, rec)
	if err != nil {
		t.Fatal(err)
	}
	run := testenv.Run(t, c.Run)
	t.Cleanup(func() {
		if err := run.Stop(); err != nil || run.Err() != context.Canceled {
			t.Errorf("Run returned %v, want context.Canceled", run.Err())
		}
	})
	return c, rec
}

// Test data: VIPs 127.77.x.x, endpoints 127.0.x.x.

var adsSource = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}

func edsCluster(name, serviceName string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{ServiceName: serviceName, EdsConfig: adsSource},
		ConnectTimeout:       durationpb.New(time.Second),
	}
}

func staticCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment:       assignment(name, "127.0.0.1"),
	}
}

func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

func assignment(name string, ips ...string) *endpointv3.ClusterLoadAssignment {
	var lbs []*endpointv3.LbEndpoint
	for _, ip := range ips {
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: socketAddress(ip, 8080)},
		}})
	}
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: name,
		Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}},
	}
}

// hcmFilter is an HTTP connection manager loading route over RDS.
func hcmFilter(t testing.TB, route string) *listenerv3.Filter {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: "http",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: route, ConfigSource: adsSource,
		}},
	}
	a, err := anypb.New(hcm)
	if err != nil {
		t.Fatal(err)
	}
	return &listenerv3.Filter{Name: wellknown.HTTPConnectionManager, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}}
}

func tcpFilter(t testing.TB, cluster string) *listenerv3.Filter {
	a, err := anypb.New(&tcpv3.TcpProxy{StatPrefix: "tcp", ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: cluster}})
	if err != nil {
		t.Fatal(err)
	}
	return &listenerv3.Filter{Name: wellknown.TCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}}
}

// listener has one filter chain per filter, on 127.77.0.1:port.
func listener(name string, port uint32, filters ...*listenerv3.Filter) *listenerv3.Listener {
	l := &listenerv3.Listener{Name: name, Address: socketAddress("127.77.0.1", port)}
	for _, f := range filters {
		l.FilterChains = append(l.FilterChains, &listenerv3.FilterChain{Filters: []*listenerv3.Filter{f}})
	}
	return l
}

func routeConfig(name, cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
			}},
		}},
	}
}

// ips returns n endpoint addresses in 127.0.0.0/16.
func ips(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("127.0.%d.%d", i/250, i%250+1)
	}
	return out
}

package istiodsim

import (
	"context"
	"slices"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// wait bounds every wait of the tests; conditions are polled, not slept on.
const wait = 20 * time.Second

const testNode = "sidecar~127.0.0.1~test-0.default~default.svc.cluster.local"

// startSim creates and starts a Sim on loopback, stopped when the test ends.
func startSim(t testing.TB, opts Options) *Sim {
	t.Helper()
	sim, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := sim.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(sim.Stop)
	return sim
}

// client is a bare ADS client: one stream, requests sent by hand, responses
// received in order.
type client struct {
	t      testing.TB
	stream grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]
	resps  chan *discoveryv3.DiscoveryResponse
	errc   chan error
	cancel context.CancelFunc
}

func dial(t testing.TB, addr string) *client {
	t.Helper()
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatalf("open ADS stream: %v", err)
	}
	c := &client{t: t, stream: stream, resps: make(chan *discoveryv3.DiscoveryResponse, 64), errc: make(chan error, 1), cancel: cancel}
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				c.errc <- err
				return
			}
			select {
			case c.resps <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	return c
}

// request sends a request for typeURL with names, answering prev (nil for
// a first request).
func (c *client) request(typeURL string, names []string, prev *discoveryv3.DiscoveryResponse) {
	c.t.Helper()
	req := &discoveryv3.DiscoveryRequest{
		Node:          &corev3.Node{Id: testNode},
		TypeUrl:       typeURL,
		ResourceNames: names,
		VersionInfo:   prev.GetVersionInfo(),
		ResponseNonce: prev.GetNonce(),
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send %s request: %v", typeURL, err)
	}
}

// nack rejects r.
func (c *client) nack(r *discoveryv3.DiscoveryResponse, names []string, msg string) {
	c.t.Helper()
	err := c.stream.Send(&discoveryv3.DiscoveryRequest{
		Node:          &corev3.Node{Id: testNode},
		TypeUrl:       r.GetTypeUrl(),
		ResourceNames: names,
		ResponseNonce: r.GetNonce(),
		ErrorDetail:   &status.Status{Code: 3, Message: msg},
	})
	if err != nil {
		c.t.Fatalf("send NACK: %v", err)
	}
}

// recv returns the next response, which must be of typeURL.
func (c *client) recv(typeURL string) *discoveryv3.DiscoveryResponse {
	c.t.Helper()
	select {
	case r := <-c.resps:
		if r.GetTypeUrl() != typeURL {
			c.t.Fatalf("got a %s response, want %s", r.GetTypeUrl(), typeURL)
		}
		return r
	case err := <-c.errc:
		c.t.Fatalf("stream failed waiting for %s: %v", typeURL, err)
	case <-time.After(wait):
		c.t.Fatalf("no %s response within %v", typeURL, wait)
	}
	return nil
}

// subscribe requests typeURL, receives the answer and ACKs it.
func (c *client) subscribe(typeURL string, names []string) *discoveryv3.DiscoveryResponse {
	c.t.Helper()
	c.request(typeURL, names, nil)
	r := c.recv(typeURL)
	c.request(typeURL, names, r)
	return r
}

// clusters decodes a CDS response.
func clusters(t testing.TB, r *discoveryv3.DiscoveryResponse) []*clusterv3.Cluster {
	t.Helper()
	var out []*clusterv3.Cluster
	for _, a := range r.GetResources() {
		c := &clusterv3.Cluster{}
		if err := a.UnmarshalTo(c); err != nil {
			t.Fatalf("decode cluster: %v", err)
		}
		out = append(out, c)
	}
	return out
}

// loads decodes an EDS response, by cluster name.
func loads(t testing.TB, r *discoveryv3.DiscoveryResponse) map[string]*endpointv3.ClusterLoadAssignment {
	t.Helper()
	out := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, a := range r.GetResources() {
		c := &endpointv3.ClusterLoadAssignment{}
		if err := a.UnmarshalTo(c); err != nil {
			t.Fatalf("decode assignment: %v", err)
		}
		out[c.GetClusterName()] = c
	}
	return out
}

// edsClusters are the names of the EDS clusters of a CDS response.
func edsClusters(t testing.TB, r *discoveryv3.DiscoveryResponse) []string {
	var out []string
	for _, c := range clusters(t, r) {
		if c.GetType() == clusterv3.Cluster_EDS {
			out = append(out, c.GetName())
		}
	}
	slices.Sort(out)
	return out
}

// addresses are the sorted endpoint addresses of an assignment.
func addresses(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			out = append(out, e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress())
		}
	}
	slices.Sort(out)
	return out
}

func truthAddresses(st ServiceTruth) []string {
	var out []string
	for _, e := range st.Endpoints {
		out = append(out, e.Address)
	}
	slices.Sort(out)
	return out
}

// sameResources reports whether two responses carry byte-identical
// resources.
func sameResources(a, b *discoveryv3.DiscoveryResponse) bool {
	return slices.EqualFunc(a.GetResources(), b.GetResources(), func(x, y *anypb.Any) bool {
		return proto.Equal(x, y)
	})
}

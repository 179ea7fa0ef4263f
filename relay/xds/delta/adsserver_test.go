package delta

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// adsServer is a scripted delta ADS server on loopback: each stream is
// handed to the test, which reads requests and sends responses by hand.
type adsServer struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	addr    string
	streams chan *serverStream
}

type serverStream struct {
	reqs chan *discoveryv3.DeltaDiscoveryRequest
	send chan *discoveryv3.DeltaDiscoveryResponse
	done chan struct{} // closed to end the stream from the server side
	once sync.Once
}

func (ss *serverStream) close() { ss.once.Do(func() { close(ss.done) }) }

func startADS(t *testing.T) *adsServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &adsServer{addr: lis.Addr().String(), streams: make(chan *serverStream, 4)}
	srv := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, a)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return a
}

func (a *adsServer) DeltaAggregatedResources(st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	ss := &serverStream{reqs: make(chan *discoveryv3.DeltaDiscoveryRequest, 64), send: make(chan *discoveryv3.DeltaDiscoveryResponse), done: make(chan struct{})}
	a.streams <- ss
	errc := make(chan error, 1)
	go func() {
		for {
			req, err := st.Recv()
			if err != nil {
				errc <- err
				return
			}
			ss.reqs <- req
		}
	}()
	for {
		select {
		case <-ss.done:
			return nil
		case err := <-errc:
			return err
		case resp := <-ss.send:
			if err := st.Send(resp); err != nil {
				return err
			}
		}
	}
}

const wait = 20 * time.Second

func (a *adsServer) nextStream(t *testing.T) *serverStream {
	t.Helper()
	select {
	case ss := <-a.streams:
		return ss
	case <-time.After(wait):
		t.Fatal("no stream opened")
		return nil
	}
}

func (ss *serverStream) next(t *testing.T) *discoveryv3.DeltaDiscoveryRequest {
	t.Helper()
	select {
	case r := <-ss.reqs:
		return r
	case <-time.After(wait):
		t.Fatal("no request")
		return nil
	}
}

// push sends a response of url with msgs (by name → message) and removed.
func (ss *serverStream) push(t *testing.T, url, nonce string, msgs map[string]proto.Message, removed ...string) {
	t.Helper()
	resp := &discoveryv3.DeltaDiscoveryResponse{TypeUrl: url, Nonce: nonce, RemovedResources: removed}
	for name, m := range msgs {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		resp.Resources = append(resp.Resources, &discoveryv3.Resource{Name: name, Version: "v-" + name + "-" + nonce, Resource: a})
	}
	ss.pushRaw(resp)
}

func (ss *serverStream) pushRaw(resp *discoveryv3.DeltaDiscoveryResponse) { ss.send <- resp }

// recorder is a Handler that queues Updates.
type recorder struct{ ch chan Update }

func (r *recorder) OnUpdate(_ context.Context, u Update) { r.ch <- u }

func (r *recorder) next(t *testing.T) Update {
	t.Helper()
	select {
	case u := <-r.ch:
		return u
	case <-time.After(wait):
		t.Fatal("no update")
		return Update{}
	}
}

func startClient(t *testing.T, addr string, syncTimeout time.Duration) (*Client, *recorder) {
	t.Helper()
	rec := &recorder{ch: make(chan Update, 64)}
	return runClient(t, addr, NodeFromEnv(func(string) string { return "" }, ""), syncTimeout, rec), rec
}

// runClient runs a client reporting to h until the test ends.
func runClient(t *testing.T, addr string, node *corev3.Node, syncTimeout time.Duration, h Handler) *Client {
	t.Helper()
	c, err := New(Options{
		Address:     addr,
		Node:        node,
		Backoff:     BackoffOptions{Initial: 5 * time.Millisecond, Max: 20 * time.Millisecond},
		SyncTimeout: syncTimeout,
	}, h)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, c.Run)
	return c
}

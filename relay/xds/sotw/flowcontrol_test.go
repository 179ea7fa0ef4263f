package sotw

import (
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// flowWindow is gRPC's smallest flow-control window: with it, a response or
// request of a few hundred KiB blocks its sender until the peer reads.
const flowWindow = 64 << 10

// TestReceivesWhileAckIsBlocked: a server that sends many large responses
// before it reads again (Istiod pushing while its reads lag) must get them
// all through, although every response makes the client send a large
// request (an EDS subscription of 2,000 names) that cannot go out until the
// server reads. A client that sends on its receiving goroutine deadlocks
// here.
func TestReceivesWhileAckIsBlocked(t *testing.T) {
	const pushes, clustersPerPush = 20, 2000
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.InitialWindowSize(flowWindow), grpc.InitialConnWindowSize(flowWindow))
	sent := make(chan struct{})
	lastEDS := make(chan []string, 1)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, &scriptedADS{run: func(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
		if _, err := st.Recv(); err != nil {
			return err
		}
		var want []string
		for p := range pushes {
			var cs []proto.Message
			want = want[:0]
			for i := range clustersPerPush {
				name := fmt.Sprintf("outbound|80||svc-%d-push-%d.a-long-namespace-name.svc.cluster.local", i, p)
				cs = append(cs, edsCluster(name, name))
				want = append(want, name)
			}
			resp := &discoveryv3.DiscoveryResponse{TypeUrl: clusterType.url, VersionInfo: fmt.Sprint(p), Nonce: fmt.Sprint(p)}
			for _, m := range cs {
				a, err := anypb.New(m)
				if err != nil {
					return err
				}
				resp.Resources = append(resp.Resources, a)
			}
			if err := st.Send(resp); err != nil {
				return err
			}
		}
		close(sent)
		slices.Sort(want)
		for {
			req, err := st.Recv()
			if err != nil {
				return err
			}
			if req.GetTypeUrl() == endpointType.url && slices.Equal(req.GetResourceNames(), want) {
				lastEDS <- req.GetResourceNames()
				<-st.Context().Done()
				return nil
			}
		}
	}})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)

	c, rec := startClient(t, lis.Addr().String(), Options{DialOptions: []grpc.DialOption{
		grpc.WithInitialWindowSize(flowWindow), grpc.WithInitialConnWindowSize(flowWindow)}})
	go func() {
		for range rec.ch {
		}
	}()
	select {
	case <-sent:
	case <-time.After(30 * time.Second):
		t.Fatalf("server could not send its %d pushes: the client stopped receiving (deadlock); stats %+v", pushes, c.Stats())
	}
	select {
	case names := <-lastEDS:
		if len(names) != clustersPerPush {
			t.Errorf("EDS subscription of %d names, want %d", len(names), clustersPerPush)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no EDS subscription to the last push's clusters")
	}
}

// scriptedADS serves every SotW stream with run.
type scriptedADS struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	run func(discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error
}

func (s *scriptedADS) StreamAggregatedResources(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return s.run(st)
}

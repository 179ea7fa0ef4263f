package istiodsim

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestKeepsReadingWhileSendIsBlocked: a client that does not receive
// blocks the Sim's sends (flow control, small windows); the Sim must still
// read every request the client sends, as Istiod does, or a client that
// sends before it receives again deadlocks with it.
func TestKeepsReadingWhileSendIsBlocked(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: sends megabytes through small flow-control windows")
	}
	const window = 64 << 10 // gRPC's smallest
	sim := startSim(t, Options{Services: 2000, InitialWindowSize: window})
	conn, err := grpc.NewClient(sim.Addr(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(window), grpc.WithInitialConnWindowSize(window))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The CDS answer (2,000 services) is far larger than the client's
	// window, which is never drained: the Sim's stream blocks sending it.
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: testNode}, TypeUrl: ClusterType}); err != nil {
		t.Fatal(err)
	}
	names := make([]string, 2000)
	for i := range names {
		names[i] = fmt.Sprintf("outbound|80||svc-%d.ns-0.svc.cluster.local", i)
	}
	// Then EDS requests worth many times the Sim's window: each Send
	// returns only once the Sim has read enough.
	sent := make(chan error, 1)
	go func() {
		for range 20 {
			if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: testNode}, TypeUrl: EndpointType, ResourceNames: names}); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatalf("send: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the Sim stopped reading requests while its send was blocked (deadlock)")
	}
}

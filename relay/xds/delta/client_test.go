package delta

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"istio.io/istio/pkg/workloadapi"
	"istio.io/istio/pkg/workloadapi/security"
)

func wlAddr(uid string, ip byte) *workloadapi.Address {
	return &workloadapi.Address{Type: &workloadapi.Address_Workload{Workload: &workloadapi.Workload{
		Uid: uid, Addresses: [][]byte{{127, 1, 0, ip}}}}}
}

func svcAddr(host string) *workloadapi.Address {
	return &workloadapi.Address{Type: &workloadapi.Address_Service{Service: &workloadapi.Service{
		Name: host, Namespace: "ns", Hostname: host}}}
}

// subscribed checks the first requests of a stream: the wildcard of each
// type, with the node, and returns them by type.
func subscribed(t *testing.T, ss *serverStream) map[string]*discoveryv3.DeltaDiscoveryRequest {
	t.Helper()
	out := map[string]*discoveryv3.DeltaDiscoveryRequest{}
	for range resourceTypes {
		r := ss.next(t)
		if !slices.Equal(r.GetResourceNamesSubscribe(), []string{"*"}) || r.GetResponseNonce() != "" ||
			!strings.HasPrefix(r.GetNode().GetId(), "ztunnel~") {
			t.Fatalf("first request %v: want a wildcard subscription with a ztunnel node", r)
		}
		out[r.GetTypeUrl()] = r
	}
	if out[AddressType] == nil || out[AuthorizationType] == nil {
		t.Fatalf("subscriptions %v: want Address and Authorization", slices.Collect(maps.Keys(out)))
	}
	return out
}

func expectReply(t *testing.T, ss *serverStream, url, nonce string, nack bool) *discoveryv3.DeltaDiscoveryRequest {
	t.Helper()
	r := ss.next(t)
	if r.GetTypeUrl() != url || r.GetResponseNonce() != nonce || (r.GetErrorDetail() != nil) != nack {
		t.Fatalf("reply %v: want type %s nonce %s nack=%v", r, url, nonce, nack)
	}
	return r
}

func expectUpdate(t *testing.T, u Update, url string, upserted, removed []string, complete bool) {
	t.Helper()
	got := slices.Sorted(maps.Keys(u.Upserted))
	if u.TypeURL != url || !slices.Equal(got, upserted) || !slices.Equal(u.Removed, removed) || u.Complete != complete {
		t.Fatalf("update %s upserted %v removed %v complete %v; want %s %v %v %v",
			u.TypeURL, got, u.Removed, u.Complete, url, upserted, removed, complete)
	}
}

func TestDeltaProtocol(t *testing.T) {
	ads := startADS(t)
	c, rec := startClient(t, ads.addr, time.Hour)
	ss := ads.nextStream(t)
	subs := subscribed(t, ss)
	if len(subs[AddressType].GetInitialResourceVersions()) != 0 {
		t.Fatalf("first stream sent initial versions %v", subs[AddressType].GetInitialResourceVersions())
	}

	ss.push(t, AddressType, "n1", map[string]proto.Message{"w1": wlAddr("w1", 1), "w2": wlAddr("w2", 2), "ns/s": svcAddr("s")})
	expectReply(t, ss, AddressType, "n1", false)
	expectUpdate(t, rec.next(t), AddressType, []string{"ns/s", "w1", "w2"}, nil, false)
	ss.push(t, AuthorizationType, "n2", map[string]proto.Message{"ns/p": &security.Authorization{Name: "p", Namespace: "ns"}})
	expectReply(t, ss, AuthorizationType, "n2", false)
	expectUpdate(t, rec.next(t), AuthorizationType, []string{"ns/p"}, nil, true)

	// Change one, re-send one unchanged, remove one held and one unknown.
	ss.push(t, AddressType, "n3", map[string]proto.Message{"w1": wlAddr("w1", 9), "w2": wlAddr("w2", 2)}, "ns/s", "never-held")
	expectReply(t, ss, AddressType, "n3", false)
	expectUpdate(t, rec.next(t), AddressType, []string{"w1"}, []string{"ns/s"}, true)

	// Identical re-push: ACKed, no update.
	ss.push(t, AddressType, "n4", map[string]proto.Message{"w2": wlAddr("w2", 2)})
	expectReply(t, ss, AddressType, "n4", false)

	// Invalid responses are NACKed by nonce and change nothing.
	bad := []*discoveryv3.DeltaDiscoveryResponse{
		{TypeUrl: AddressType, Nonce: "b1", Resources: []*discoveryv3.Resource{{Name: "x", Resource: &anypb.Any{TypeUrl: AddressType, Value: []byte{0x0a, 0xff}}}}},
		{TypeUrl: AddressType, Nonce: "b2", Resources: []*discoveryv3.Resource{{Name: "w3", Resource: mustAny(t, &workloadapi.Address{})}}},
		{TypeUrl: AddressType, Nonce: "b3", Resources: []*discoveryv3.Resource{{Name: "w1", Resource: mustAny(t, wlAddr("w1", 7))}}, RemovedResources: []string{"w1"}},
		{TypeUrl: AddressType, Nonce: "b4", Resources: []*discoveryv3.Resource{{Name: "w5", Resource: mustAny(t, wlAddr("w5", 5))}, {Name: "w5", Resource: mustAny(t, wlAddr("w5", 6))}}},
		{TypeUrl: AddressType, Nonce: "b5", Resources: []*discoveryv3.Resource{{Name: "w6"}}},
		{TypeUrl: AddressType, Nonce: "b6", Resources: []*discoveryv3.Resource{{Name: "w2"}}}, // held name, no body
	}
	for _, resp := range bad {
		ss.pushRaw(resp)
		r := expectReply(t, ss, AddressType, resp.GetNonce(), true)
		if r.GetErrorDetail().GetMessage() == "" {
			t.Errorf("NACK of %s without a reason", resp.GetNonce())
		}
	}
	if st := c.Stats(); st.NACKs != uint64(len(bad)) || st.Resources[AddressType] != 2 {
		t.Errorf("stats %+v: want %d NACKs and 2 addresses kept", st, len(bad))
	}
	// The next valid response goes through; nothing from the NACKed ones
	// leaked into the state.
	ss.push(t, AddressType, "n5", nil, "w2")
	expectReply(t, ss, AddressType, "n5", false)
	expectUpdate(t, rec.next(t), AddressType, nil, []string{"w2"}, true)
	select {
	case u := <-rec.ch:
		t.Fatalf("unexpected update %+v", u)
	default:
	}
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestReconnectKeepsStateAndSendsVersions(t *testing.T) {
	ads := startADS(t)
	c, rec := startClient(t, ads.addr, 50*time.Millisecond)
	ss := ads.nextStream(t)
	subscribed(t, ss)
	ss.push(t, AddressType, "n1", map[string]proto.Message{"w1": wlAddr("w1", 1), "ns/s": svcAddr("s")})
	expectReply(t, ss, AddressType, "n1", false)
	rec.next(t)

	// The first stream never gets Authorization: its state is unknown, so
	// the stream never becomes complete, even after SyncTimeout.
	time.Sleep(200 * time.Millisecond)
	if c.Stats().Complete {
		t.Fatal("complete without any Authorization response")
	}
	ss.push(t, AuthorizationType, "n2", nil)
	expectReply(t, ss, AuthorizationType, "n2", false)
	expectUpdate(t, rec.next(t), AuthorizationType, nil, nil, true)

	ss.close()
	ss2 := ads.nextStream(t)
	subs := subscribed(t, ss2)
	want := map[string]string{"w1": "v-w1-n1", "ns/s": "v-ns/s-n1"}
	if got := subs[AddressType].GetInitialResourceVersions(); !maps.Equal(got, want) {
		t.Errorf("initial_resource_versions %v, want %v", got, want)
	}
	if got := subs[AuthorizationType].GetInitialResourceVersions(); len(got) != 0 {
		t.Errorf("authorization initial versions %v, want none", got)
	}
	if c.Stats().Resources[AddressType] != 2 {
		t.Error("state lost on disconnect")
	}
	// Istiod has no difference and sends nothing: both types were known
	// from the first stream, so SyncTimeout completes the new stream with
	// an update that changes nothing.
	expectUpdate(t, rec.next(t), "", nil, nil, true)
}

func TestNodeAndOptions(t *testing.T) {
	env := map[string]string{"POD_IP": "127.0.0.9", "POD_NAME": "r", "POD_NAMESPACE": "ns", "NODE_NAME": "n1"}
	n := NodeFromEnv(func(k string) string { return env[k] }, "c1")
	if n.GetId() != "ztunnel~127.0.0.9~r.ns~ns.svc.cluster.local" {
		t.Errorf("id %q", n.GetId())
	}
	md := n.GetMetadata().GetFields()
	if md["NODE_NAME"].GetStringValue() != "n1" || md["CLUSTER_ID"].GetStringValue() != "c1" || md["NAMESPACE"].GetStringValue() != "ns" {
		t.Errorf("metadata %v", md)
	}
	for _, o := range []Options{{}, {Address: "x"}, {Address: "x", Node: NodeFromEnv(func(string) string { return "not-ip" }, "")}} {
		if err := o.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil, want an error", o)
		}
	}
	if _, err := New(Options{Address: "x", Node: n}, nil); err == nil {
		t.Error("New with a nil handler succeeded")
	}
}

package sotw

import (
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

const (
	cdsURL = resourcev3.ClusterType
	ldsURL = resourcev3.ListenerType
	edsURL = resourcev3.EndpointType
	rdsURL = resourcev3.RouteType

	clusterA = "outbound|80||a.ns1.svc.cluster.local" // EDS name = cluster name
	clusterB = "outbound|80||b.ns1.svc.cluster.local" // EDS name = edsB
	edsB     = "outbound|80||b-eds.ns1.svc.cluster.local"
	static   = "static-x"
)

// The state every client test starts from.
func clustersV1() []proto.Message {
	return []proto.Message{edsCluster(clusterA, ""), edsCluster(clusterB, edsB), staticCluster(static)}
}

func listenersV1(t testing.TB) []proto.Message {
	withDefault := listener("127.77.0.10_8080", 8080, hcmFilter(t, "8080"), tcpFilter(t, static))
	withDefault.DefaultFilterChain = &listenerv3.FilterChain{Filters: []*listenerv3.Filter{hcmFilter(t, "default-route")}}
	return []proto.Message{
		listener("0.0.0.0_80", 80, hcmFilter(t, "80")),
		withDefault,
		listener("127.77.0.11_9000", 9000, tcpFilter(t, clusterA)),
	}
}

var routeNamesV1 = []string{"80", "8080", "default-route"}

// fixture is a client connected to a test ADS server.
type fixture struct {
	ads *adsServer
	s   *serverStream
	c   *Client
	rec *recorder
}

// newFixture starts a server and a client and checks the first two
// requests: wildcard CDS then wildcard LDS, with the node.
func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	if opts.SyncTimeout == 0 {
		// Only TestSyncTimeout wants completeness by timeout; elsewhere a
		// slow machine must not see it.
		opts.SyncTimeout = time.Hour
	}
	f := &fixture{ads: startADS(t, "127.0.0.1:0")}
	f.c, f.rec = startClient(t, f.ads.addr, opts)
	f.s = f.ads.nextStream(t)
	f.expectInitial(t, nil, nil)
	return f
}

// expectInitial checks the first requests of a stream: CDS, LDS, then EDS
// and RDS when names are given.
func (f *fixture) expectInitial(t *testing.T, eds, rds []string) {
	t.Helper()
	wantNode := f.c.node.GetId()
	for _, want := range []struct {
		url   string
		names []string
	}{{cdsURL, nil}, {ldsURL, nil}, {edsURL, eds}, {rdsURL, rds}} {
		if want.url != cdsURL && want.url != ldsURL && len(want.names) == 0 {
			continue
		}
		req := f.s.next(t)
		expectRequest(t, req, want.url, "", "", want.names)
		if req.GetNode().GetId() != wantNode {
			t.Errorf("%s request node id %q, want %q", want.url, req.GetNode().GetId(), wantNode)
		}
	}
}

// syncAll pushes CDS, LDS, EDS and RDS version v1 and checks the requests
// and updates up to a complete state.
func (f *fixture) syncAll(t *testing.T) {
	t.Helper()
	f.s.push(t, cdsURL, "v1", "c1", clustersV1()...)
	expectRequest(t, f.s.next(t), cdsURL, "v1", "c1", nil)
	expectRequest(t, f.s.next(t), edsURL, "", "", []string{clusterA, edsB})
	expectUpdate(t, f.rec.next(t), cdsURL, []string{clusterA, clusterB, static}, nil, false)

	f.s.push(t, ldsURL, "v1", "l1", listenersV1(t)...)
	expectRequest(t, f.s.next(t), ldsURL, "v1", "l1", nil)
	expectRequest(t, f.s.next(t), rdsURL, "", "", routeNamesV1)
	expectUpdate(t, f.rec.next(t), ldsURL, []string{"0.0.0.0_80", "127.77.0.10_8080", "127.77.0.11_9000"}, nil, false)

	f.s.push(t, edsURL, "v1", "e1", assignment(clusterA, "127.0.0.1", "127.0.0.2"), assignment(edsB, "127.0.0.3"))
	expectRequest(t, f.s.next(t), edsURL, "v1", "e1", []string{clusterA, edsB})
	expectUpdate(t, f.rec.next(t), edsURL, []string{clusterA, edsB}, nil, false)

	f.s.push(t, rdsURL, "v1", "r1", routeConfig("80", clusterA), routeConfig("8080", clusterB), routeConfig("default-route", clusterA))
	expectRequest(t, f.s.next(t), rdsURL, "v1", "r1", routeNamesV1)
	// Every subscribed name answered: this update completes the state.
	expectUpdate(t, f.rec.next(t), rdsURL, routeNamesV1, nil, true)
}

func expectRequest(t *testing.T, req *discoveryv3.DiscoveryRequest, url, version, nonce string, names []string) {
	t.Helper()
	if req.GetTypeUrl() != url || req.GetVersionInfo() != version || req.GetResponseNonce() != nonce ||
		!slices.Equal(req.GetResourceNames(), names) || req.GetErrorDetail() != nil {
		t.Fatalf("request = {type %s version %q nonce %q names %q error %v}, want {type %s version %q nonce %q names %q}",
			req.GetTypeUrl(), req.GetVersionInfo(), req.GetResponseNonce(), req.GetResourceNames(), req.GetErrorDetail(),
			url, version, nonce, names)
	}
}

func expectUpdate(t *testing.T, u Update, url string, upserted, removed []string, complete bool) {
	t.Helper()
	got := slices.Sorted(maps.Keys(u.Upserted))
	if u.TypeURL != url || !slices.Equal(got, upserted) || !slices.Equal(u.Removed, removed) || u.Complete != complete {
		t.Fatalf("update = {type %s upserted %q removed %q complete %v}, want {type %s upserted %q removed %q complete %v}",
			u.TypeURL, got, u.Removed, u.Complete, url, upserted, removed, complete)
	}
	if u.ReceivedAt.IsZero() {
		t.Errorf("update %s has no ReceivedAt", url)
	}
}

// expectNoEmptyNamedRequest fails if the client ever sent an EDS or RDS
// request without names (Istiod would unsubscribe everything).
func expectNoEmptyNamedRequest(t *testing.T, ss *serverStream) {
	t.Helper()
	for _, req := range ss.requests() {
		if (req.GetTypeUrl() == edsURL || req.GetTypeUrl() == rdsURL) && len(req.GetResourceNames()) == 0 {
			t.Errorf("sent %s request with no names (version %q nonce %q)", req.GetTypeUrl(), req.GetVersionInfo(), req.GetResponseNonce())
		}
	}
}

func TestSubscribeAndAck(t *testing.T) {
	f := newFixture(t, Options{})
	f.syncAll(t)

	st := f.c.Stats()
	if st.ACKs != 4 || st.NACKs != 0 || st.StreamsOpened != 1 || st.Updates != 4 || !st.Complete || !st.Connected || !f.c.Connected() {
		t.Errorf("stats = %+v", st)
	}
	if st.Resources[cdsURL] != 3 || st.Resources[edsURL] != 2 || st.Subscribed[edsURL] != 2 || st.Subscribed[rdsURL] != 3 {
		t.Errorf("sizes = %v %v", st.Resources, st.Subscribed)
	}
	if st.BytesReceived == 0 {
		t.Error("no bytes counted")
	}
	expectNoEmptyNamedRequest(t, f.s)
}

func TestPartialPushAndRemoval(t *testing.T) {
	f := newFixture(t, Options{})
	f.syncAll(t)

	// A partial EDS push changes one assignment; the other is kept.
	f.s.push(t, edsURL, "v2", "e2", assignment(clusterA, "127.0.0.9"))
	expectRequest(t, f.s.next(t), edsURL, "v2", "e2", []string{clusterA, edsB})
	u := f.rec.next(t)
	expectUpdate(t, u, edsURL, []string{clusterA}, nil, true)
	if got := u.Upserted[clusterA].(*endpointv3.ClusterLoadAssignment); got.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress() != "127.0.0.9" {
		t.Errorf("upserted assignment = %v", got)
	}

	// Cluster A leaves CDS: its assignment leaves the subscription and is
	// reported removed.
	f.s.push(t, cdsURL, "v2", "c2", edsCluster(clusterB, edsB), staticCluster(static))
	expectRequest(t, f.s.next(t), cdsURL, "v2", "c2", nil)
	expectRequest(t, f.s.next(t), edsURL, "v2", "e2", []string{edsB})
	expectUpdate(t, f.rec.next(t), cdsURL, nil, []string{clusterA}, true)
	expectUpdate(t, f.rec.next(t), edsURL, nil, []string{clusterA}, true)

	// The last EDS cluster goes: no EDS request (it would have no names).
	f.s.push(t, cdsURL, "v3", "c3", staticCluster(static))
	expectRequest(t, f.s.next(t), cdsURL, "v3", "c3", nil)
	expectUpdate(t, f.rec.next(t), cdsURL, nil, []string{clusterB}, true)
	expectUpdate(t, f.rec.next(t), edsURL, nil, []string{edsB}, true)

	// The next request is the ACK of this route push: nothing came between.
	f.s.push(t, rdsURL, "v2", "r2", routeConfig("80", static))
	expectRequest(t, f.s.next(t), rdsURL, "v2", "r2", routeNamesV1)
	expectUpdate(t, f.rec.next(t), rdsURL, []string{"80"}, nil, true)

	// Listeners lose their HTTP routes: RDS state dropped, no request.
	f.s.push(t, ldsURL, "v2", "l2", listener("127.77.0.11_9000", 9000, tcpFilter(t, clusterA)))
	expectRequest(t, f.s.next(t), ldsURL, "v2", "l2", nil)
	expectUpdate(t, f.rec.next(t), ldsURL, nil, []string{"0.0.0.0_80", "127.77.0.10_8080"}, true)
	expectUpdate(t, f.rec.next(t), rdsURL, nil, routeNamesV1, true)

	// A cluster comes back: EDS is subscribed again, from the stream's
	// last EDS version and nonce.
	f.s.push(t, cdsURL, "v4", "c4", staticCluster(static), edsCluster(clusterA, ""))
	expectRequest(t, f.s.next(t), cdsURL, "v4", "c4", nil)
	expectRequest(t, f.s.next(t), edsURL, "v2", "e2", []string{clusterA})
	expectUpdate(t, f.rec.next(t), cdsURL, []string{clusterA}, nil, true)

	expectNoEmptyNamedRequest(t, f.s)
}

func TestIdenticalRepush(t *testing.T) {
	f := newFixture(t, Options{})
	f.syncAll(t)

	// Same content, new versions and nonces (as after an Istiod push that
	// changed nothing here): ACKed, nothing reported.
	f.s.push(t, cdsURL, "v2", "c2", clustersV1()...)
	expectRequest(t, f.s.next(t), cdsURL, "v2", "c2", nil)
	f.s.push(t, ldsURL, "v2", "l2", listenersV1(t)...)
	expectRequest(t, f.s.next(t), ldsURL, "v2", "l2", nil)
	f.s.push(t, edsURL, "v2", "e2", assignment(clusterA, "127.0.0.1", "127.0.0.2"))
	expectRequest(t, f.s.next(t), edsURL, "v2", "e2", []string{clusterA, edsB})

	// The next update is this one: the re-pushes produced none.
	f.s.push(t, edsURL, "v3", "e3", assignment(edsB, "127.0.0.4"))
	expectRequest(t, f.s.next(t), edsURL, "v3", "e3", []string{clusterA, edsB})
	expectUpdate(t, f.rec.next(t), edsURL, []string{edsB}, nil, true)
	if st := f.c.Stats(); st.Updates != 5 || st.ACKs != 8 {
		t.Errorf("updates %d acks %d, want 5 and 8", st.Updates, st.ACKs)
	}
}

func TestNACK(t *testing.T) {
	f := newFixture(t, Options{})
	f.syncAll(t)

	mustAny := func(m proto.Message) *anypb.Any {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	// A valid new cluster rides along in every bad response: it must not
	// be applied.
	extra := mustAny(edsCluster("outbound|81||c.ns1.svc.cluster.local", ""))
	badTimeout := edsCluster("bad-timeout", "")
	badTimeout.ConnectTimeout = durationpb.New(-time.Second)
	badHCM := listener("bad-hcm", 80, hcmFilter(t, "80"))
	badHCM.FilterChains[0].Filters[0].GetTypedConfig().Value = []byte{0xff, 0xff, 0xff}

	for i, tc := range []struct {
		name    string
		url     string
		res     []*anypb.Any
		version string   // the last good version, sent back
		names   []string // the current names, sent back
		reason  string   // in error_detail
	}{
		{"wrong type url", cdsURL, []*anypb.Any{extra, mustAny(listener("l", 80))}, "v1", nil, "type_url"},
		{"undecodable", cdsURL, []*anypb.Any{extra, {TypeUrl: cdsURL, Value: []byte{0xff, 0xff}}}, "v1", nil, "unmarshal"},
		{"empty name", cdsURL, []*anypb.Any{extra, mustAny(edsCluster("", ""))}, "v1", nil, "empty name"},
		{"validation", cdsURL, []*anypb.Any{extra, mustAny(badTimeout)}, "v1", nil, `"bad-timeout"`},
		{"duplicate", cdsURL, []*anypb.Any{extra, mustAny(staticCluster("dup")), mustAny(staticCluster("dup"))}, "v1", nil, `"dup": duplicate`},
		{"bad http connection manager", ldsURL, []*anypb.Any{mustAny(badHCM)}, "v1", nil, `"bad-hcm"`},
		{"endpoint without name", edsURL, []*anypb.Any{mustAny(assignment(clusterA, "127.0.0.7")), mustAny(assignment(""))}, "v1", []string{clusterA, edsB}, "empty name"},
	} {
		nonce := "bad-" + string(rune('a'+i))
		f.s.pushAny(tc.url, "bad-version", nonce, tc.res...)
		req := f.s.next(t)
		if req.GetTypeUrl() != tc.url || req.GetVersionInfo() != tc.version || req.GetResponseNonce() != nonce ||
			!slices.Equal(req.GetResourceNames(), tc.names) {
			t.Fatalf("%s: NACK = {type %s version %q nonce %q names %q}, want {%s %q %q %q}", tc.name,
				req.GetTypeUrl(), req.GetVersionInfo(), req.GetResponseNonce(), req.GetResourceNames(), tc.url, tc.version, nonce, tc.names)
		}
		if d := req.GetErrorDetail(); d == nil || d.GetCode() != int32(codes.InvalidArgument) || !strings.Contains(d.GetMessage(), tc.reason) {
			t.Errorf("%s: error_detail = %v, want a message containing %q", tc.name, d, tc.reason)
		}
	}

	// Nothing was applied: the next update is this one, and the cluster set
	// is still v1.
	f.s.push(t, edsURL, "v2", "e2", assignment(edsB, "127.0.0.5"))
	expectRequest(t, f.s.next(t), edsURL, "v2", "e2", []string{clusterA, edsB})
	expectUpdate(t, f.rec.next(t), edsURL, []string{edsB}, nil, true)
	st := f.c.Stats()
	if st.NACKs != 7 || st.Resources[cdsURL] != 3 || st.Resources[ldsURL] != 3 || st.LastError == nil {
		t.Errorf("stats after NACKs = %+v", st)
	}
}

func TestReconnect(t *testing.T) {
	f := newFixture(t, Options{})
	f.syncAll(t)

	// Istiod ends the stream (GOAWAY, restart): the client comes back with
	// wildcards and its current names, from no version.
	f.s.end <- status.Error(codes.Unavailable, "recycled")
	f.s = f.ads.nextStream(t)
	f.expectInitial(t, []string{clusterA, edsB}, routeNamesV1)
	if !waitUntil(f.c.Connected) {
		t.Fatal("not connected after reconnect")
	}

	// Nothing is deleted because the stream went away; the new stream's
	// full CDS response says what is gone.
	f.s.push(t, cdsURL, "x1", "n1", edsCluster(clusterB, edsB), staticCluster(static))
	expectRequest(t, f.s.next(t), cdsURL, "x1", "n1", nil)
	expectRequest(t, f.s.next(t), edsURL, "", "", []string{edsB})
	expectUpdate(t, f.rec.next(t), cdsURL, nil, []string{clusterA}, false)
	expectUpdate(t, f.rec.next(t), edsURL, nil, []string{clusterA}, false)

	// The rest is re-sent unchanged: no change, but the state is complete
	// again on this stream, which is reported once.
	f.s.push(t, ldsURL, "x1", "n2", listenersV1(t)...)
	expectRequest(t, f.s.next(t), ldsURL, "x1", "n2", nil)
	f.s.push(t, edsURL, "x1", "n3", assignment(edsB, "127.0.0.3"))
	expectRequest(t, f.s.next(t), edsURL, "x1", "n3", []string{edsB})
	f.s.push(t, rdsURL, "x1", "n4", routeConfig("80", clusterA), routeConfig("8080", clusterB), routeConfig("default-route", clusterA))
	expectRequest(t, f.s.next(t), rdsURL, "x1", "n4", routeNamesV1)
	expectUpdate(t, f.rec.next(t), rdsURL, nil, nil, true)

	// Istiod restarts on the same address: the client reconnects by itself.
	addr := f.ads.addr
	f.ads.srv.Stop()
	if !waitUntil(func() bool { return !f.c.Connected() }) {
		t.Fatal("still connected after the server stopped")
	}
	f.ads = startADS(t, addr)
	f.s = f.ads.nextStream(t)
	f.expectInitial(t, []string{edsB}, routeNamesV1)
	if st := f.c.Stats(); st.StreamsOpened < 3 || st.Complete || st.LastError == nil {
		t.Errorf("stats after restart = %+v", st)
	}
	expectNoEmptyNamedRequest(t, f.s)
}

func TestSyncTimeout(t *testing.T) {
	f := newFixture(t, Options{SyncTimeout: 200 * time.Millisecond})
	f.s.push(t, cdsURL, "v1", "c1", clustersV1()...)
	f.s.push(t, ldsURL, "v1", "l1", listener("127.77.0.11_9000", 9000, tcpFilter(t, clusterA)))
	expectUpdate(t, f.rec.next(t), cdsURL, []string{clusterA, clusterB, static}, nil, false)
	expectUpdate(t, f.rec.next(t), ldsURL, []string{"127.77.0.11_9000"}, nil, false)

	// Istiod has endpoints for A only and never answers edsB: the state is
	// complete once SyncTimeout passed since the subscription.
	f.s.push(t, edsURL, "v1", "e1", assignment(clusterA, "127.0.0.1"))
	expectUpdate(t, f.rec.next(t), edsURL, []string{clusterA}, nil, false)
	u := f.rec.next(t)
	expectUpdate(t, u, "", nil, nil, true)
	if !f.c.Stats().Complete {
		t.Error("Stats().Complete = false")
	}

	// Later updates on the stream are complete.
	f.s.push(t, edsURL, "v2", "e2", assignment(edsB, "127.0.0.2"))
	expectUpdate(t, f.rec.next(t), edsURL, []string{edsB}, nil, true)
}

func TestLargeResponse(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a > 4 MiB response")
	}
	f := newFixture(t, Options{})
	f.s.push(t, cdsURL, "v1", "c1", edsCluster(clusterA, ""))
	f.s.push(t, ldsURL, "v1", "l1")
	expectUpdate(t, f.rec.next(t), cdsURL, []string{clusterA}, nil, false)

	big := assignment(clusterA, ips(60000)...)
	for _, port := range []uint32{8081, 8082} { // 180,000 endpoints
		for _, ip := range ips(60000) {
			big.Endpoints[0].LbEndpoints = append(big.Endpoints[0].LbEndpoints, &endpointv3.LbEndpoint{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(ip, port)}},
			})
		}
	}
	if size := proto.Size(big); size <= 4<<20 {
		t.Fatalf("test assignment is %d bytes, want > 4 MiB", size)
	}
	f.s.push(t, edsURL, "v1", "e1", big)
	u := f.rec.next(t)
	expectUpdate(t, u, edsURL, []string{clusterA}, nil, true)
	if n := len(u.Upserted[clusterA].(*endpointv3.ClusterLoadAssignment).GetEndpoints()[0].GetLbEndpoints()); n != 180000 {
		t.Errorf("received %d endpoints, want 180000", n)
	}
	if b := f.c.Stats().BytesReceived; b <= 4<<20 {
		t.Errorf("BytesReceived = %d, want > 4 MiB", b)
	}
}

// waitUntil polls cond for up to waitFor.
func waitUntil(cond func() bool) bool {
	deadline := time.Now().Add(waitFor)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

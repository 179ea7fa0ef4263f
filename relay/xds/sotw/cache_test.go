package sotw

import (
	"fmt"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func clusterResponse(tb testing.TB, n int, version string) *discoveryv3.DiscoveryResponse {
	tb.Helper()
	resp := &discoveryv3.DiscoveryResponse{TypeUrl: clusterType.url, VersionInfo: version}
	for i := range n {
		a, err := anypb.New(edsCluster(fmt.Sprintf("outbound|80||svc-%d.ns1.svc.cluster.local", i), ""))
		if err != nil {
			tb.Fatal(err)
		}
		resp.Resources = append(resp.Resources, a)
	}
	return resp
}

func TestCacheKnownBytesNotDecodedAgain(t *testing.T) {
	c := newCache(clusterType)
	entries, err := c.decode(clusterResponse(t, 3, "v1"))
	if err != nil {
		t.Fatal(err)
	}
	if up, rm := c.replaceAll(entries); len(up) != 3 || len(rm) != 0 {
		t.Fatalf("first apply: %d upserted, %d removed", len(up), len(rm))
	}
	again, err := c.decode(clusterResponse(t, 3, "v2"))
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range again {
		if e != entries[i] {
			t.Errorf("resource %d decoded again", i)
		}
	}
	if up, rm := c.replaceAll(again); len(up) != 0 || len(rm) != 0 {
		t.Errorf("identical apply: %d upserted, %d removed", len(up), len(rm))
	}
	if refs := c.references(); len(refs) != 3 {
		t.Errorf("references = %v", refs)
	}

	// Known bytes under another type URL are still rejected.
	bad := clusterResponse(t, 1, "v3")
	bad.Resources[0].TypeUrl = listenerType.url
	if _, err := c.decode(bad); err == nil {
		t.Error("known bytes with a wrong type URL accepted")
	}
}

func TestCacheMergeIgnoresUnsubscribed(t *testing.T) {
	c := newCache(endpointType)
	sub := newSubscription()
	sub.replace(nameSet{"a": {}})
	resp := &discoveryv3.DiscoveryResponse{TypeUrl: endpointType.url}
	for _, m := range []proto.Message{assignment("a", "127.0.0.1"), assignment("b", "127.0.0.2")} {
		a, _ := anypb.New(m)
		resp.Resources = append(resp.Resources, a)
	}
	entries, err := c.decode(resp)
	if err != nil {
		t.Fatal(err)
	}
	if up := c.merge(entries, sub); len(up) != 1 || up["a"] == nil || c.len() != 1 {
		t.Errorf("merge kept %d, upserted %v", c.len(), up)
	}
	if rm := c.drop([]string{"a", "never"}); len(rm) != 1 || rm[0] != "a" || c.len() != 0 {
		t.Errorf("drop = %v, %d left", rm, c.len())
	}
}

// BenchmarkClusterResponse measures decoding and applying a CDS response of
// 10,000 clusters: all new, and identical to the state held (a re-push).
func BenchmarkClusterResponse(b *testing.B) {
	const n = 10000
	resp := clusterResponse(b, n, "v1")
	b.Run("new", func(b *testing.B) {
		for b.Loop() {
			c := newCache(clusterType)
			entries, err := c.decode(resp)
			if err != nil {
				b.Fatal(err)
			}
			c.replaceAll(entries)
		}
	})
	b.Run("identical", func(b *testing.B) {
		c := newCache(clusterType)
		entries, err := c.decode(resp)
		if err != nil {
			b.Fatal(err)
		}
		c.replaceAll(entries)
		for b.Loop() {
			entries, err := c.decode(resp)
			if err != nil {
				b.Fatal(err)
			}
			if up, rm := c.replaceAll(entries); len(up)+len(rm) != 0 {
				b.Fatal("identical response changed something")
			}
		}
	})
}

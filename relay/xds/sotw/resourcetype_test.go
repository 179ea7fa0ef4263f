package sotw

import (
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestClusterReferences(t *testing.T) {
	for _, tc := range []struct {
		c    *clusterv3.Cluster
		want []string
	}{
		{edsCluster("outbound|80||a.ns", ""), []string{"outbound|80||a.ns"}},
		{edsCluster("outbound|80||a.ns", "a-eds"), []string{"a-eds"}},
		{staticCluster("static"), nil},
	} {
		got, err := clusterReferences(tc.c)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("clusterReferences(%s) = %q, %v; want %q", tc.c.GetName(), got, err, tc.want)
		}
	}
}

func TestListenerReferences(t *testing.T) {
	inline, err := anypb.New(&hcmv3.HttpConnectionManager{StatPrefix: "in", RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{}})
	if err != nil {
		t.Fatal(err)
	}
	l := listener("l", 80, hcmFilter(t, "r1"), tcpFilter(t, "c"), &listenerv3.Filter{Name: wellknown.HTTPConnectionManager, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: inline}})
	l.FilterChains[0].Filters = append(l.FilterChains[0].Filters, hcmFilter(t, "r2"))
	l.DefaultFilterChain = &listenerv3.FilterChain{Filters: []*listenerv3.Filter{hcmFilter(t, "r3")}}
	got, err := listenerReferences(l)
	if err != nil || !slices.Equal(got, []string{"r1", "r2", "r3"}) {
		t.Errorf("listenerReferences = %q, %v; want [r1 r2 r3]", got, err)
	}
	if n := len(l.GetFilterChains()); n != 3 {
		t.Errorf("listenerReferences changed the listener: %d filter chains", n)
	}

	// An HTTP connection manager configured with another type is invalid.
	wrong := listener("wrong", 80, tcpFilter(t, "c"))
	wrong.FilterChains[0].Filters[0].Name = wellknown.HTTPConnectionManager
	if _, err := listenerReferences(wrong); err == nil {
		t.Error("listenerReferences accepted a tcp_proxy config named as an HTTP connection manager")
	}
	// So is one that fails its validation rules (empty stat_prefix).
	empty, err := anypb.New(&hcmv3.HttpConnectionManager{RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "r", ConfigSource: adsSource}}})
	if err != nil {
		t.Fatal(err)
	}
	invalid := listener("invalid", 80, &listenerv3.Filter{Name: wellknown.HTTPConnectionManager, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: empty}})
	if _, err := listenerReferences(invalid); err == nil {
		t.Error("listenerReferences accepted an HTTP connection manager without stat_prefix")
	}
}

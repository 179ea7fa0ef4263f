package nodemodel

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// render formats frontends as "tcp/127.77.0.1:80 -> 127.0.0.1:8080w1 ...".
func render(fes []Frontend) []string {
	var out []string
	for _, fe := range fes {
		var bs []string
		for _, b := range fe.Backends {
			bs = append(bs, fmt.Sprintf("%sw%d", b.Addr, b.Weight))
		}
		out = append(out, fe.Key.String()+" -> "+strings.Join(bs, " "))
	}
	return out
}

func TestTranslatePortsAndTargets(t *testing.T) {
	spec := &v1.ServiceSpec{
		Namespace: "ns", Name: "a",
		Vips: []string{"127.77.0.2", "127.77.0.1", "::ffff:127.77.0.1"}, // the mapped form is the same VIP
		Ports: []*v1.ServicePort{
			{Port: 80, TargetPort: 8080, Protocol: v1.Protocol_TCP},
			{Port: 53, TargetPort: 5353, Protocol: v1.Protocol_UDP},
			{Port: 90, TargetPort: 9090}, // unspecified: TCP
		},
	}
	eps := []*v1.Endpoint{
		// Serves 80 and 90 with their own target ports, not 53.
		{Address: "127.0.0.10", Port: 8081, Weight: 2, Health: v1.Health_HEALTHY, TargetPorts: map[uint32]uint32{80: 8081, 90: 9091}},
		// No map: Endpoint.port for every service port.
		{Address: "127.0.0.11", Port: 7000, Weight: 1},
		// No map, no port: the spec's target port.
		{Address: "127.0.0.12", Weight: 3, Health: v1.Health_HEALTH_UNKNOWN},
		{Address: "127.0.0.13", Port: 8080, Health: v1.Health_UNHEALTHY},
		{Address: "127.0.0.14", Port: 8080, Health: v1.Health_DRAINING},
		{Address: "::1", Port: 8080}, // IPv6: no IPv4 VIP's backend
	}
	fes, err := Translate(model.NewService(spec, eps))
	if err != nil {
		t.Fatalf("unexpected problems: %v", err)
	}
	want := []string{
		"udp/127.77.0.1:53 -> 127.0.0.11:7000w1 127.0.0.12:5353w3",
		"tcp/127.77.0.1:80 -> 127.0.0.10:8081w2 127.0.0.11:7000w1 127.0.0.12:8080w3",
		"tcp/127.77.0.1:90 -> 127.0.0.10:9091w2 127.0.0.11:7000w1 127.0.0.12:9090w3",
		"udp/127.77.0.2:53 -> 127.0.0.11:7000w1 127.0.0.12:5353w3",
		"tcp/127.77.0.2:80 -> 127.0.0.10:8081w2 127.0.0.11:7000w1 127.0.0.12:8080w3",
		"tcp/127.77.0.2:90 -> 127.0.0.10:9091w2 127.0.0.11:7000w1 127.0.0.12:9090w3",
	}
	if got := render(fes); !slices.Equal(got, want) {
		t.Fatalf("frontends\n got %q\nwant %q", got, want)
	}
}

func TestTranslateSkipsWhatTheDatapathCannotExpress(t *testing.T) {
	spec := &v1.ServiceSpec{
		Namespace: "ns", Name: "b",
		Vips:  []string{"not-an-ip", "127.77.0.3", "::1"},
		Ports: []*v1.ServicePort{{Port: 80, TargetPort: 8080}, {Port: 9000, Protocol: v1.Protocol_SCTP}, {Port: 70000}},
	}
	eps := []*v1.Endpoint{
		{Address: "127.0.0.20", Port: 8080, Weight: 1},
		{Address: "127.0.0.20", Port: 8080, Weight: 5}, // duplicate: first weight kept
		{Address: "bogus", Port: 8080},
		{Address: "::2", Port: 8080, Weight: 1},
	}
	fes, err := Translate(model.NewService(spec, eps))
	want := []string{
		"tcp/127.77.0.3:80 -> 127.0.0.20:8080w1",
		"tcp/[::1]:80 -> [::2]:8080w1",
	}
	if got := render(fes); !slices.Equal(got, want) {
		t.Fatalf("frontends\n got %q\nwant %q", got, want)
	}
	for _, frag := range []string{`vip "not-an-ip"`, "SCTP", "port 70000", `"bogus"`} {
		if err == nil || !strings.Contains(err.Error(), frag) {
			t.Errorf("problems %v: want one mentioning %s", err, frag)
		}
	}
}

func TestTranslateNoEndpoints(t *testing.T) {
	spec := &v1.ServiceSpec{Namespace: "ns", Name: "c", Vips: []string{"127.77.0.4"}, Ports: []*v1.ServicePort{{Port: 80}}}
	fes, err := Translate(model.NewService(spec, []*v1.Endpoint{{Address: "127.0.0.1", Port: 80, Health: v1.Health_TIMEOUT}}))
	if err != nil || len(fes) != 1 || len(fes[0].Backends) != 0 {
		t.Fatalf("got %q, %v: want one frontend without backends", render(fes), err)
	}
	if fes[0].Key != datapath.NewFrontendKey(netip.MustParseAddrPort("127.77.0.4:80"), datapath.TCP) {
		t.Fatalf("key %s", fes[0].Key)
	}
	if fes, _ := Translate(nil); fes != nil {
		t.Fatal("nil service translated")
	}
}

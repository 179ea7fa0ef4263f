package inspect

import (
	"strings"
	"testing"

	"github.com/meshrelay/meshrelay/internal/model"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

func sample() *model.Service {
	s := model.NewService(&v1.ServiceSpec{
		Namespace: "ns-1", Name: "svc-1", Hostname: "svc-1.ns-1.svc.cluster.local",
		Vips:  []string{"127.77.0.1"},
		Ports: []*v1.ServicePort{{Port: 80, TargetPort: 8080, Protocol: v1.Protocol_TCP, Name: "http"}},
	}, []*v1.Endpoint{{Address: "127.0.0.2", Port: 8080, Weight: 1, TargetPorts: map[uint32]uint32{80: 8080}}})
	s.Spec.Revision, s.Slices[0].Revision = 3, 3
	return s
}

func TestDecodeGuess(t *testing.T) {
	s := sample()
	spec, _ := model.Marshal(s.Spec)
	slice, _ := model.Marshal(s.Slices[0])
	for name, tc := range map[string]struct {
		value []byte
		want  string
	}{
		"spec":             {spec, `"hostname": "svc-1.ns-1.svc.cluster.local"`},
		"slice":            {slice, `"address": "127.0.0.2"`},
		"spec + newline":   {append(append([]byte{}, spec...), '\n'), `"name": "svc-1"`},
		"slice + newline":  {append(append([]byte{}, slice...), '\n'), `"targetPorts"`},
		"spec, revision 3": {spec, `"revision": "3"`},
	} {
		m, err := Decode(tc.value, "")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out, err := JSON(m)
		if err != nil || !strings.Contains(squash(string(out)), squash(tc.want)) {
			t.Errorf("%s: %v\n%s\nwant %s", name, err, out, tc.want)
		}
	}
}

func TestDecodeKeyHint(t *testing.T) {
	s := sample()
	slice, _ := model.Marshal(s.Slices[0])
	m, err := Decode(slice, "/meshrelay/v1/east/services/ns-1/svc-1/endpoints/0")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := m.(*v1.EndpointSlice); !ok {
		t.Fatalf("key hint ignored: got %T", m)
	}
	if _, err := Decode(slice, "/meshrelay/v1/east/vips/127.77.0.1"); err == nil {
		t.Fatal("non-service key accepted")
	}
}

func TestDecodeGarbage(t *testing.T) {
	for _, b := range [][]byte{[]byte("ns-1/svc-1"), {0xff, 0x01}, nil} {
		if m, err := Decode(b, ""); err == nil {
			t.Errorf("%q decoded as %T", b, m)
		}
	}
}

// squash drops whitespace: protojson randomizes its spacing on purpose.
func squash(s string) string { return strings.Join(strings.Fields(s), "") }

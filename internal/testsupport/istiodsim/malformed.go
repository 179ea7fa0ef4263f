package istiodsim

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Malformation is the defect of the invalid resource PushMalformed sends.
type Malformation int

const (
	// Undecodable is a resource whose bytes do not decode as its type.
	Undecodable Malformation = iota
	// WrongType is a resource of another type than the response's.
	WrongType
	// Nameless is a well-formed resource with an empty name.
	Nameless
	// Misnamed is a well-formed Authorization under a resource name that is
	// not its "<namespace>/<name>" (PushMalformedAuthorization only).
	Misnamed
)

func (m Malformation) String() string {
	switch m {
	case Undecodable:
		return "undecodable"
	case WrongType:
		return "wrong-type"
	case Nameless:
		return "nameless"
	case Misnamed:
		return "misnamed"
	}
	return fmt.Sprintf("Malformation(%d)", int(m))
}

// malformedResponse is a response PushMalformed queued on the streams.
type malformedResponse struct {
	t       xdsType
	version string
	body    []byte
}

// PushMalformed sends every stream watching typeURL one response holding an
// invalid resource: for CDS and LDS the full state plus the invalid
// resource, for EDS and RDS the invalid resource alone. A correct client
// NACKs it and keeps its last good state. The Sim's truth and snapshots do
// not change: the next push is valid again.
func (s *Sim) PushMalformed(typeURL string, m Malformation) error {
	t, ok := typeOf(typeURL)
	if !ok {
		return fmt.Errorf("push malformed: type %q not served", typeURL)
	}
	bad, err := malformedResource(t, m)
	if err != nil {
		return fmt.Errorf("push malformed %s: %w", t, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := s.snap.Load()
	var resources []*anypb.Any
	if t.wildcard() {
		resources = sn.all(t)
	}
	version := fmt.Sprintf("%s-malformed-%s", sn.version, m)
	body, err := encodeBody(sn.instance, version, t.url(), append(resources, bad))
	if err != nil {
		return fmt.Errorf("push malformed: %w", err)
	}
	r := &malformedResponse{t: t, version: version, body: body}
	for st := range s.streams {
		st.enqueue(queued{malformed: r})
	}
	s.log.Info("istiodsim malformed push", "type", t, "malformation", m, "streams", len(s.streams))
	return nil
}

func malformedResource(t xdsType, m Malformation) (*anypb.Any, error) {
	switch m {
	case Undecodable:
		return undecodable(t.url()), nil
	case WrongType:
		if t == cdsType {
			return mustAny(&listenerv3.Listener{Name: "malformed"}), nil
		}
		return mustAny(&clusterv3.Cluster{Name: "malformed"}), nil
	case Nameless:
		var msg proto.Message
		switch t {
		case cdsType:
			msg = &clusterv3.Cluster{ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}}
		case edsType:
			msg = &endpointv3.ClusterLoadAssignment{}
		case ldsType:
			msg = &listenerv3.Listener{}
		case rdsType:
			msg = &routev3.RouteConfiguration{}
		}
		return mustAny(msg), nil
	}
	return nil, fmt.Errorf("unknown malformation %d", int(m))
}

// undecodable is a resource of typeURL whose bytes decode as no message:
// field 1, length-delimited, claiming 2^32-1 bytes that are not there.
func undecodable(typeURL string) *anypb.Any {
	return &anypb.Any{TypeUrl: typeURL, Value: []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f}}
}

// sendMalformed sends m if the stream watches its type.
func (st *sotwStream) sendMalformed(m *malformedResponse) error {
	w := st.watches[m.t]
	if w == nil {
		return nil
	}
	return st.send(w, &encodedResponse{body: m.body, nonce: st.sim.nonce(st.sim.snap.Load())}, m.version)
}

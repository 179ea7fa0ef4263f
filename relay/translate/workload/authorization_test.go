package workload

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"istio.io/istio/pkg/workloadapi/security"
)

func TestAuthorizationValue(t *testing.T) {
	a := &security.Authorization{
		Name: "deny-other", Namespace: "ns", Scope: security.Scope_NAMESPACE, Action: security.Action_DENY,
		Groups: []*security.Group{{Rules: []*security.Rules{{Matches: []*security.Match{{
			NotNamespaces:    []*security.StringMatch{{MatchType: &security.StringMatch_Exact{Exact: "ns"}}},
			DestinationPorts: []uint32{8080},
		}}}}}},
	}
	got, err := AuthorizationValue(a)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"name":"deny-other","namespace":"ns","scope":"NAMESPACE","action":"DENY",` +
		`"groups":[{"rules":[{"matches":[{"notNamespaces":[{"exact":"ns"}],"destinationPorts":[8080]}]}]}]}`
	if string(got) != want {
		t.Fatalf("value\n got %s\nwant %s", got, want)
	}
	again, err := AuthorizationValue(proto.Clone(a).(*security.Authorization))
	if err != nil || !bytes.Equal(again, got) {
		t.Fatalf("equal policies encode differently: %s vs %s (%v)", again, got, err)
	}
	back := new(security.Authorization)
	if err := protojson.Unmarshal(got, back); err != nil || !proto.Equal(back, a) {
		t.Fatalf("value does not decode back to the policy: %v", err)
	}
}

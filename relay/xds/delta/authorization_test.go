package delta

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"istio.io/istio/pkg/workloadapi/security"
)

// TestDeltaAuthorizationChecked: an Authorization the relay could not store
// under authorizations/<namespace>/<name> is NACKed and changes nothing; a
// valid one is accepted.
func TestDeltaAuthorizationChecked(t *testing.T) {
	ads := startADS(t)
	c, rec := startClient(t, ads.addr, time.Hour)
	ss := ads.nextStream(t)
	subscribed(t, ss)
	bad := []struct {
		name string
		a    *security.Authorization
	}{
		{"ns/other", &security.Authorization{Name: "p", Namespace: "ns"}}, // not "<namespace>/<name>"
		{"/p", &security.Authorization{Name: "p"}},                        // no namespace
		{"ns/", &security.Authorization{Namespace: "ns"}},                 // no name
		{"ns/a/b", &security.Authorization{Name: "a/b", Namespace: "ns"}},
		{"a/b/p", &security.Authorization{Name: "p", Namespace: "a/b"}},
	}
	for i, b := range bad {
		nonce := fmt.Sprintf("b%d", i)
		ss.push(t, AuthorizationType, nonce, map[string]proto.Message{b.name: b.a})
		if r := expectReply(t, ss, AuthorizationType, nonce, true); r.GetErrorDetail().GetMessage() == "" {
			t.Errorf("NACK of %s without a reason", b.name)
		}
	}
	ss.push(t, AuthorizationType, "ok", map[string]proto.Message{"ns/p": &security.Authorization{Name: "p", Namespace: "ns"}})
	expectReply(t, ss, AuthorizationType, "ok", false)
	expectUpdate(t, rec.next(t), AuthorizationType, []string{"ns/p"}, nil, false)
	if st := c.Stats(); st.NACKs != uint64(len(bad)) || st.Resources[AuthorizationType] != 1 {
		t.Errorf("stats %+v: want %d NACKs and 1 policy held", st, len(bad))
	}
}

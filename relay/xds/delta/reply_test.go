package delta

import (
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/meshrelay/meshrelay/relay/xds/reconnect"
)

// TestRepliesCollapseToNewestNoncePerType: replies not sent yet collapse to
// the reply (ACK or NACK) to the newest response nonce of each type, never
// across types, in the order the types were first queued. The newest nonce
// is the only one Istiod does not discard as expired (see doc.go).
func TestRepliesCollapseToNewestNoncePerType(t *testing.T) {
	s := &stream{out: reconnect.NewRequests[*discoveryv3.DeltaDiscoveryRequest]()}
	bad := &statuspb.Status{Code: 3, Message: "bad"}
	s.reply(addressType, "1", bad)
	s.reply(authorizationType, "2", nil)
	s.reply(addressType, "3", nil)
	s.reply(addressType, "4", bad)
	s.reply(authorizationType, "5", bad)
	s.reply(authorizationType, "6", nil)

	want := []struct {
		url, nonce string
		nack       bool
	}{{AddressType, "4", true}, {AuthorizationType, "6", false}}
	for _, w := range want {
		r, ok := s.out.Pop()
		if !ok {
			t.Fatalf("no reply left, want %s nonce %s", w.url, w.nonce)
		}
		if r.GetTypeUrl() != w.url || r.GetResponseNonce() != w.nonce || (r.GetErrorDetail() != nil) != w.nack {
			t.Fatalf("reply %v: want %s nonce %s nack=%v", r, w.url, w.nonce, w.nack)
		}
	}
	if r, ok := s.out.Pop(); ok {
		t.Fatalf("extra reply %v", r)
	}
}

package delta

import (
	"fmt"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
)

// decodeResource turns the i-th resource of a response of type typ into its
// message. It fails, with an error naming the resource, when the name is
// empty, the body is missing, the Any's type URL is not the response's, the
// bytes do not unmarshal, or the message fails the type's check.
func decodeResource(typ *resourceType, i int, r *discoveryv3.Resource) (proto.Message, error) {
	if r.GetName() == "" {
		return nil, fmt.Errorf("%s resource %d: empty name", typ.short, i)
	}
	a := r.GetResource()
	if a == nil {
		return nil, fmt.Errorf("%s %q: no resource body", typ.short, r.GetName())
	}
	if a.GetTypeUrl() != typ.url {
		return nil, fmt.Errorf("%s %q: type_url %q does not match the response type", typ.short, r.GetName(), a.GetTypeUrl())
	}
	m := typ.newMessage()
	if err := proto.Unmarshal(a.GetValue(), m); err != nil {
		return nil, fmt.Errorf("%s %q: unmarshal: %w", typ.short, r.GetName(), err)
	}
	if err := typ.check(r.GetName(), m); err != nil {
		return nil, fmt.Errorf("%s %q: %w", typ.short, r.GetName(), err)
	}
	return m, nil
}

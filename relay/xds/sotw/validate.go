package sotw

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// decodeResource turns the i-th resource of a response of type typ into its
// message and name. It fails, with an error naming the resource, when the
// Any's type URL is not the response's, when the bytes do not unmarshal, when
// the message fails its protoc-gen-validate rules, or when the name is empty.
func decodeResource(typ *resourceType, i int, a *anypb.Any) (proto.Message, string, error) {
	if a.GetTypeUrl() != typ.url {
		return nil, "", fmt.Errorf("%s resource %d: type_url %q does not match the response type", typ.short, i, a.GetTypeUrl())
	}
	m := typ.newMessage()
	if err := proto.Unmarshal(a.GetValue(), m); err != nil {
		return nil, "", fmt.Errorf("%s resource %d: unmarshal: %w", typ.short, i, err)
	}
	name := resourceName(m)
	if name == "" {
		return nil, "", fmt.Errorf("%s resource %d: empty name", typ.short, i)
	}
	if err := validateMessage(m); err != nil {
		return nil, "", fmt.Errorf("%s %q: %w", typ.short, name, err)
	}
	return m, name, nil
}

// validateMessage runs the protoc-gen-validate rules generated for envoy's
// messages: ValidateAll (every violation) when the message has it, else
// Validate (the first one). Messages without rules are valid.
func validateMessage(m proto.Message) error {
	switch v := m.(type) {
	case interface{ ValidateAll() error }:
		return v.ValidateAll()
	case interface{ Validate() error }:
		return v.Validate()
	}
	return nil
}

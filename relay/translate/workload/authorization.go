package workload

import (
	"bytes"
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"istio.io/istio/pkg/workloadapi/security"
)

// AuthorizationType is the type URL of Istio's ambient authorization
// policies.
const AuthorizationType = "type.googleapis.com/istio.security.Authorization"

// AuthorizationValue is the value the relay stores for an authorization
// policy under authorizations/<namespace>/<name> (docs/contract.md, section
// 1): the message as protobuf JSON (lowerCamelCase field names, enums by
// name, unset fields omitted, map keys sorted), compacted, so that equal
// policies give equal bytes and etcdctl shows them readably.
func AuthorizationValue(a *security.Authorization) ([]byte, error) {
	b, err := protojson.Marshal(a)
	if err != nil {
		return nil, fmt.Errorf("authorization %s/%s: %w", a.GetNamespace(), a.GetName(), err)
	}
	// protojson varies its whitespace on purpose; compacting removes it.
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return nil, fmt.Errorf("authorization %s/%s: compact: %w", a.GetNamespace(), a.GetName(), err)
	}
	return out.Bytes(), nil
}

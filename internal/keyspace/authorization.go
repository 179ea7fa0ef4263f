package keyspace

import "strings"

// Authorization identifies one Istio ambient authorization policy
// (istio.security.Authorization) by namespace and name. Istiod names the
// resource "<namespace>/<name>".
type Authorization struct {
	Namespace string
	Name      string
}

// String returns "namespace/name", the resource name Istiod gives the
// policy.
func (a Authorization) String() string { return a.Namespace + "/" + a.Name }

// ParseAuthorization parses a resource name "namespace/name" with
// non-empty segments and no further "/".
func ParseAuthorization(s string) (Authorization, bool) {
	svc, err := ParseService(s) // the same form
	if err != nil {
		return Authorization{}, false
	}
	return Authorization(svc), true
}

// AuthorizationShard is the shard of a among n: the shard function of
// services (Shard) applied to "<namespace>/<name>", so that the relay
// leading a shard writes its policies too.
func AuthorizationShard(a Authorization, n int) int { return Shard(Service(a), n) }

// AuthorizationsPrefix is the prefix of every authorization policy key.
func (s Space) AuthorizationsPrefix() string { return s.prefix + "authorizations/" }

// AuthorizationKey is authorizations/<namespace>/<name>; its value is the
// policy as protobuf JSON (docs/contract.md, section 1).
func (s Space) AuthorizationKey(a Authorization) string {
	return s.prefix + "authorizations/" + a.Namespace + "/" + a.Name
}

// ParseAuthorizationKey parses a key under AuthorizationsPrefix strictly:
// exactly authorizations/<namespace>/<name> with non-empty segments. ok is
// false for any other key. A parsed key round-trips through
// AuthorizationKey.
func (s Space) ParseAuthorizationKey(key string) (Authorization, bool) {
	rest, found := strings.CutPrefix(key, s.AuthorizationsPrefix())
	if !found {
		return Authorization{}, false
	}
	return ParseAuthorization(rest)
}

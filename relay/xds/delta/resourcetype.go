package delta

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/proto"
	"istio.io/istio/pkg/workloadapi"
	"istio.io/istio/pkg/workloadapi/security"

	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// Type URLs of the resources the client subscribes to.
const (
	AddressType       = "type.googleapis.com/istio.workload.Address"
	AuthorizationType = "type.googleapis.com/istio.security.Authorization"
)

// resourceType describes one of the types the client subscribes to.
type resourceType struct {
	url   string
	short string // for logs and errors
	// newMessage returns an empty message of the type.
	newMessage func() proto.Message
	// check rejects a decoded message, named name, that the consumer
	// cannot use.
	check func(name string, m proto.Message) error
}

var (
	addressType = &resourceType{
		url: AddressType, short: "WDS",
		newMessage: func() proto.Message { return new(workloadapi.Address) },
		check:      checkAddress,
	}
	authorizationType = &resourceType{
		url: AuthorizationType, short: "Authorization",
		newMessage: func() proto.Message { return new(security.Authorization) },
		check:      checkAuthorization,
	}

	// resourceTypes is the order of the first requests on a stream.
	resourceTypes = []*resourceType{addressType, authorizationType}
)

// typeByURL returns the resource type of a type URL, or nil.
func typeByURL(url string) *resourceType {
	for _, t := range resourceTypes {
		if t.url == url {
			return t
		}
	}
	return nil
}

// checkAddress requires an Address to be a Service with a namespace and
// hostname, or a Workload with a uid.
func checkAddress(_ string, m proto.Message) error {
	a := m.(*workloadapi.Address)
	switch {
	case a.GetService() != nil:
		if a.GetService().GetNamespace() == "" || a.GetService().GetHostname() == "" {
			return errors.New("service without namespace or hostname")
		}
	case a.GetWorkload() != nil:
		if a.GetWorkload().GetUid() == "" {
			return errors.New("workload without uid")
		}
	default:
		return errors.New("neither a service nor a workload")
	}
	return nil
}

// checkAuthorization requires an Authorization to have a namespace and a
// name that make a key (keyspace.ParseAuthorization) and to be named as
// Istiod names it, "<namespace>/<name>": the relay stores it under that
// key (docs/contract.md, section 1).
func checkAuthorization(name string, m proto.Message) error {
	a := m.(*security.Authorization)
	k, ok := keyspace.ParseAuthorization(a.GetNamespace() + "/" + a.GetName())
	if !ok {
		return fmt.Errorf("authorization namespace %q, name %q: want non-empty, without '/'", a.GetNamespace(), a.GetName())
	}
	if k.String() != name {
		return fmt.Errorf("authorization %s under resource name %q: want %q", k, name, k)
	}
	return nil
}

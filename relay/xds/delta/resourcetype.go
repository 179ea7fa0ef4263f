package delta

import (
	"errors"

	"google.golang.org/protobuf/proto"
	"istio.io/istio/pkg/workloadapi"
	"istio.io/istio/pkg/workloadapi/security"
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
	// check rejects a decoded message the consumer cannot use.
	check func(m proto.Message) error
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
		check:      func(proto.Message) error { return nil },
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
func checkAddress(m proto.Message) error {
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

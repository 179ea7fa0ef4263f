package istiodsim

import (
	"cmp"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"google.golang.org/grpc"

	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// MaxServices is the largest number of services a Sim can hold over its
// lifetime (including those added later): every service gets its own VIP in
// 127.77.0.0/16.
const MaxServices = 65000

// Options configures a Sim. The zero value is usable: every zero field takes
// the default documented on it.
type Options struct {
	// Services is the number of services generated at New. Default 10.
	Services int
	// Authorizations is the number of authorization policies served over
	// delta at New (GeneratedAuthorization 0 .. n-1). Default 0.
	Authorizations int
	// EndpointsPerService is the number of endpoints each service starts
	// with. Default 3.
	EndpointsPerService int
	// Namespaces spreads services over ns-0 .. ns-<Namespaces-1> (service i
	// is in ns-<i % Namespaces>). Default 1.
	Namespaces int
	// PortsPerService gives each service ports 80+k -> 8080+k for k in
	// [0, PortsPerService), named "http" (k = 0) and "http-<80+k>". Default 1.
	// Ignored when Ports is set.
	PortsPerService int
	// Ports, when set, are the ports of every service (sorted by port number
	// by New). Only TCP is served.
	Ports []Port
	// Seed seeds the generator of weights, localities and churn choices, so
	// two Sims with the same options hold the same services.
	Seed int64
	// SubsetClusters adds a subset cluster outbound|<port>|v1|<hostname> per
	// port, as Istio does for DestinationRule subsets. Consumers must ignore
	// them.
	SubsetClusters bool
	// Weights gives endpoints load-balancing weights in [1, 10] instead of 1.
	Weights bool
	// Debounce delays pushes until changes have been quiet for this long (at
	// most MaxDebounce after the first change), as Istiod does with 100 ms.
	// Default 0: every change is pushed at once.
	Debounce time.Duration
	// MaxDebounce bounds the delay of a push under constant changes.
	// Default 10 s (Istiod's).
	MaxDebounce time.Duration
	// MaxConnectionAge, when set, makes the server close connections (GOAWAY)
	// after this age, as Istiod does every 30 minutes. Default 0: never.
	MaxConnectionAge time.Duration
	// MaxMessageSize is the gRPC send and receive limit. Default 256 MiB
	// (Istiod's messages exceed gRPC's 4 MiB default).
	MaxMessageSize int
	// InitialWindowSize, when set, is the server's gRPC flow-control window
	// per stream and per connection, in bytes (at least 64 KiB; a set
	// window turns off gRPC's window growth). Tests set a small one to
	// make flow control bite. Default 0: gRPC's.
	InitialWindowSize int32
	// ServerOptions are added to the gRPC server's (TLS credentials, an
	// interceptor checking the caller's token, ...).
	ServerOptions []grpc.ServerOption
	// OnPush, when set, is called after every push has been handed to the
	// streams, from the goroutine that made the push. It must not block; it
	// may call the Sim's methods.
	OnPush func(PushInfo)
	// Logger receives the Sim's logs. Default: discard.
	Logger *slog.Logger
}

// Port is one service port and the port its endpoints listen on.
type Port struct {
	Port       uint32
	TargetPort uint32
	Name       string
	// Protocol must be TCP (or unspecified, which means TCP).
	Protocol v1.Protocol
}

// PushInfo describes one push the Sim sent to its streams.
type PushInfo struct {
	// Version is the version_info of the push's responses.
	Version string
	// Time is when the push was handed to the streams.
	Time time.Time
	// Services are the indexes of the services whose changes the push
	// carries (empty for Repush).
	Services []int
	// Full lists the type URLs pushed in full; EDS may instead be partial.
	Full []string
}

func (o Options) withDefaults() (Options, error) {
	if o.Services < 0 || o.EndpointsPerService < 0 || o.Namespaces < 0 || o.PortsPerService < 0 {
		return o, fmt.Errorf("negative count in options %+v", o)
	}
	if o.Services == 0 {
		o.Services = 10
	}
	if o.Services > MaxServices {
		return o, fmt.Errorf("services %d: more than %d do not fit in 127.77.0.0/16", o.Services, MaxServices)
	}
	if o.EndpointsPerService == 0 {
		o.EndpointsPerService = 3
	}
	if o.Namespaces == 0 {
		o.Namespaces = 1
	}
	if o.PortsPerService == 0 {
		o.PortsPerService = 1
	}
	if len(o.Ports) == 0 {
		for k := range o.PortsPerService {
			name := "http"
			if k > 0 {
				name = fmt.Sprintf("http-%d", 80+k)
			}
			o.Ports = append(o.Ports, Port{Port: uint32(80 + k), TargetPort: uint32(8080 + k), Name: name, Protocol: v1.Protocol_TCP})
		}
	} else {
		o.Ports = append([]Port(nil), o.Ports...)
	}
	seen := map[uint32]bool{}
	for i, p := range o.Ports {
		if p.Port == 0 || p.Port > 65535 || p.TargetPort == 0 || p.TargetPort > 65535 {
			return o, fmt.Errorf("port %d: port %d -> %d out of range", i, p.Port, p.TargetPort)
		}
		if seen[p.Port] {
			return o, fmt.Errorf("port %d: duplicate port %d", i, p.Port)
		}
		seen[p.Port] = true
		switch p.Protocol {
		case v1.Protocol_PROTOCOL_UNSPECIFIED:
			o.Ports[i].Protocol = v1.Protocol_TCP
		case v1.Protocol_TCP:
		default:
			return o, fmt.Errorf("port %d: protocol %s not served (TCP only)", p.Port, p.Protocol)
		}
		if p.Name == "" {
			o.Ports[i].Name = fmt.Sprintf("tcp-%d", p.Port)
		}
	}
	slices.SortFunc(o.Ports, func(a, b Port) int { return cmp.Compare(a.Port, b.Port) })
	if o.Debounce < 0 || o.MaxDebounce < 0 || o.MaxConnectionAge < 0 || o.MaxMessageSize < 0 || o.InitialWindowSize < 0 {
		return o, fmt.Errorf("negative duration or size in options")
	}
	if o.MaxDebounce == 0 {
		o.MaxDebounce = 10 * time.Second
	}
	if o.MaxMessageSize == 0 {
		o.MaxMessageSize = 256 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o, nil
}

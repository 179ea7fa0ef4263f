package scenario

import (
	"github.com/meshrelay/meshrelay/relay"
	"github.com/meshrelay/meshrelay/scale-tests/internal/config"
)

// relayMode is the relay's upstream mode (relay --mode) for an xDS API
// of the harness (--xds-api).
func relayMode(api string) relay.Mode {
	if api == config.APIWorkload {
		return relay.ModeWorkload
	}
	return relay.ModeSotW
}

// Memory one direct node needs per service in the mesh (of 5 endpoints),
// measured as the live heap of direct nodes synced with 10,000 services: a
// SotW node keeps every decoded cluster, listener and endpoint assignment
// and their translation (about 120 MB per node); a workload-API node every
// decoded Service and Workload Address and their translation (about 94 MB).
const (
	directBytesPerServiceSotW     = 13 << 10
	directBytesPerServiceWorkload = 10 << 10
)

// directBytesPerService estimates the memory one direct node of api needs
// per service in the mesh.
func directBytesPerService(api string) int64 {
	if api == config.APIWorkload {
		return directBytesPerServiceWorkload
	}
	return directBytesPerServiceSotW
}

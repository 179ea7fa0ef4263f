package istiodsim

import (
	"fmt"
	"net/netip"
	"strings"
)

// validateNodeID checks a node id the way Istiod does before serving a
// stream: <type>~<ip>~<pod>.<namespace>~<namespace>.svc.cluster.local, with a
// known proxy type and a valid IP.
func validateNodeID(id string) error {
	if id == "" {
		return fmt.Errorf("missing node id")
	}
	parts := strings.Split(id, "~")
	if len(parts) != 4 {
		return fmt.Errorf("node id %q: want 4 parts separated by '~', have %d", id, len(parts))
	}
	switch parts[0] {
	case "sidecar", "router", "waypoint", "ztunnel":
	default:
		return fmt.Errorf("node id %q: unknown proxy type %q", id, parts[0])
	}
	if _, err := netip.ParseAddr(parts[1]); err != nil {
		return fmt.Errorf("node id %q: invalid IP %q", id, parts[1])
	}
	if parts[2] == "" {
		return fmt.Errorf("node id %q: empty pod id", id)
	}
	return nil
}

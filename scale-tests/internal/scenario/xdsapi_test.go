package scenario

import (
	"strings"
	"testing"

	"github.com/meshrelay/meshrelay/relay"
	"github.com/meshrelay/meshrelay/scale-tests/internal/config"
)

func TestRelayMode(t *testing.T) {
	for api, want := range map[string]relay.Mode{
		config.APISotW:     relay.ModeSotW,
		config.APIWorkload: relay.ModeWorkload,
	} {
		if got := relayMode(api); got != want {
			t.Errorf("relayMode(%q) = %q, want %q", api, got, want)
		}
	}
}

// TestFitDirectNodes checks that the cap on direct nodes follows the
// memory a node of each API needs: a workload-API node holds less of the
// mesh decoded than a SotW one, so more of them fit.
func TestFitDirectNodes(t *testing.T) {
	const gib = int64(1) << 30
	cfg := func(api string, direct int) *config.Config {
		return &config.Config{Nodes: 200, Services: 10000, EndpointsPerService: 5, XDSAPI: api, DirectNodes: direct}
	}
	sotw, note := fitDirectNodes(cfg(config.APISotW, 0), 20*gib)
	if sotw >= 200 || sotw < 1 || !strings.Contains(note, "ran ") {
		t.Errorf("sotw with 20 GiB: %d nodes (%q), want fewer than 200 and a note", sotw, note)
	}
	// 3/10 of 20 GiB over 13 KiB × 10,000 services per node.
	if want := int(20 * gib * 3 / 10 / (13 << 10 * 10000)); sotw != want {
		t.Errorf("sotw with 20 GiB: %d nodes, want %d", sotw, want)
	}
	wl, _ := fitDirectNodes(cfg(config.APIWorkload, 0), 20*gib)
	if want := int(20 * gib * 3 / 10 / (10 << 10 * 10000)); wl != want || wl <= sotw {
		t.Errorf("workload with 20 GiB: %d nodes, want %d (more than sotw's %d)", wl, want, sotw)
	}
	// A summary of an older run has no API: SotW.
	if old, _ := fitDirectNodes(cfg("", 0), 20*gib); old != sotw {
		t.Errorf("no API: %d nodes, want sotw's %d", old, sotw)
	}
	if n, note := fitDirectNodes(cfg(config.APIWorkload, 0), 1000*gib); n != 200 || note != "" {
		t.Errorf("plenty of memory: %d nodes (%q), want 200 and no note", n, note)
	}
	if n, note := fitDirectNodes(cfg(config.APIWorkload, 7), 1000*gib); n != 7 || !strings.Contains(note, "--direct-nodes") {
		t.Errorf("--direct-nodes 7: %d nodes (%q)", n, note)
	}
	if n, _ := fitDirectNodes(cfg(config.APIWorkload, 0), 0); n != 200 {
		t.Errorf("unknown memory: %d nodes, want all 200", n)
	}
}

package results

import (
	"time"

	"github.com/meshrelay/meshrelay/scale-tests/internal/config"
	"github.com/meshrelay/meshrelay/scale-tests/internal/measure"
	"github.com/meshrelay/meshrelay/scale-tests/internal/workload"
)

// Summary is summary.json: everything a run measured.
type Summary struct {
	Name     string          `json:"name"`
	Command  string          `json:"command"`
	Started  time.Time       `json:"started"`
	Seconds  float64         `json:"seconds"`
	Machine  measure.Machine `json:"machine"`
	Config   config.Config   `json:"config"`
	Workload workload.Usage  `json:"workload"`
	// Modes holds one result per mode run, in order.
	Modes []*Mode `json:"modes"`
	// Targets compares the run with the scale targets.
	Targets []Target `json:"targets"`
	// OK is false when a correctness gate failed or a component died.
	OK     bool     `json:"ok"`
	Errors []string `json:"errors,omitempty"`
}

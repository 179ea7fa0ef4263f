package roles

import (
	"time"

	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/scale-tests/internal/measure"
)

// SimConfig configures the simulator role.
type SimConfig struct {
	Services            int           `json:"services"`
	EndpointsPerService int           `json:"endpointsPerService"`
	Namespaces          int           `json:"namespaces"`
	PortsPerService     int           `json:"portsPerService"`
	Weights             bool          `json:"weights"`
	Seed                int64         `json:"seed"`
	Debounce            time.Duration `json:"debounce"`
}

// SimStats is what the simulator role reports.
type SimStats struct {
	Istiod istiodsim.Stats `json:"istiod"`
	// Streams is the number of xDS streams open now, SotW and delta.
	Streams int `json:"streams"`
	// DeltaStreams are the delta (workload API) streams among Streams.
	DeltaStreams int `json:"deltaStreams"`
	Services     int `json:"services"`
	// Violations and Nacks count what clients did wrong or rejected.
	Violations int `json:"violations"`
	Nacks      int `json:"nacks"`
	// Events counts endpoint changes recorded; ServiceChanges the services
	// carried by pushes (a service in two pushes counts twice).
	Events         int   `json:"events"`
	ServiceChanges int64 `json:"serviceChanges"`
	LastPush       int64 `json:"lastPush"`
	// Changed counts the endpoints the mutations of this role changed.
	Changed int64 `json:"changed"`
}

type ChurnRequest struct {
	// Rate is in endpoints per second.
	Rate     float64       `json:"rate"`
	Duration time.Duration `json:"duration"`
	// Rolling replaces every endpoint of one service after another, in a
	// shuffled order; otherwise single endpoints of random services change.
	Rolling bool  `json:"rolling"`
	Seed    int64 `json:"seed"`
}

type ChurnResult struct {
	Endpoints int  `json:"endpoints"`
	Services  int  `json:"services"`
	Complete  bool `json:"complete"` // rolling: every service was restarted
}

type FailRequest struct {
	Fraction float64 `json:"fraction"`
}

type CountResult struct {
	N int `json:"n"`
}

type ScaleRequest struct {
	Batch    int           `json:"batch"`
	Target   int           `json:"target"`
	Interval time.Duration `json:"interval"`
}

type EventsRequest struct {
	From int `json:"from"`
}

type EventsResult struct {
	Events    []measure.UpstreamEvent `json:"events"`
	Unstamped int                     `json:"unstamped"`
}

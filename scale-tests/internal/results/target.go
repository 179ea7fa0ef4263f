package results

// Target is one scale target and what the run measured.
type Target struct {
	Target   string `json:"target"`
	Measured string `json:"measured"`
	// Status is "met", "missed" or "n/a".
	Status string `json:"status"`
	Why    string `json:"why,omitempty"`
}

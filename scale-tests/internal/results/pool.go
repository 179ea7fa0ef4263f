package results

// AgentTotals sums the counters of a relay-mode pool's node agents
// (nodeagent.Agent.Stats), at one instant.
type AgentTotals struct {
	Ready             int     `json:"ready"`
	ServicesLoaded    int64   `json:"servicesLoaded"`
	QueueDepth        int64   `json:"queueDepth"`
	Events            int64   `json:"agentEvents"`
	Coalesced         int64   `json:"agentCoalesced"`
	Flushes           int64   `json:"flushes"`
	ApplyErrors       int64   `json:"applyErrors"`
	ThrottledSeconds  float64 `json:"throttledSeconds"`
	MissesLoaded      int64   `json:"missesLoaded"`
	MissesUnknown     int64   `json:"missesUnknown"`
	Watches           int64   `json:"watches"`
	Lists             int64   `json:"lists"`
	Relists           int64   `json:"relists"`
	VIPGets           int64   `json:"vipGets"`
	WatchEvents       int64   `json:"watchEvents"`
	GenerationChanges int64   `json:"generationChanges"`
}

// DirectTotals sums the counters of a direct-mode pool's nodes, at one
// instant: their xDS clients' and their own.
type DirectTotals struct {
	// Updates are the xDS updates the nodes handled; TranslateErrors,
	// Conflicts and ApplyErrors what went wrong handling them.
	Updates         int64 `json:"updates"`
	TranslateErrors int64 `json:"translateErrors"`
	Conflicts       int64 `json:"conflicts"`
	ApplyErrors     int64 `json:"applyErrors"`
	// From the xDS clients: responses, NACKs, streams opened, resource
	// bytes received, and the nodes whose state is complete.
	Responses     uint64 `json:"responses"`
	NACKs         uint64 `json:"nacks"`
	Streams       uint64 `json:"streams"`
	ResourceBytes uint64 `json:"resourceBytes"`
	Complete      int    `json:"complete"`
}

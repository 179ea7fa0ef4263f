package nodeagent

import (
	"context"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/nodeagent/etcdsource"
)

// runNamespace loads every service of namespace ns, as the source finds
// them (etcdsource.Source.RunNamespace), until ctx is done.
func (a *Agent) runNamespace(ctx context.Context, ns string) error {
	err := a.src.RunNamespace(ctx, ns, etcdsource.NamespaceHandler{
		Found: a.loadNamespaced,
		Listed: func() {
			a.mu.Lock()
			a.load.listed()
			a.mu.Unlock()
			kick(a.wake)
		},
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// loadNamespaced watches svc as a service of a loaded namespace. initial
// services (listed at start) count for the first complete reconcile.
func (a *Agent) loadNamespaced(svc keyspace.Service, initial bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.applyEffectsLocked(a.load.namespaced(svc, initial))
}

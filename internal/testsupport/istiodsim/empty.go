package istiodsim

import "fmt"

// PushEmpty sends every stream watching typeURL, which must be CDS or LDS
// (the full-state types), one response with no resources: to a client, every
// cluster (or listener) is deleted. It models a misbehaving upstream; the
// Sim's truth and snapshots do not change, so the next push (e.g. Repush)
// brings everything back.
func (s *Sim) PushEmpty(typeURL string) error {
	t, ok := typeOf(typeURL)
	if !ok || !t.wildcard() {
		return fmt.Errorf("push empty: type %q is not a full-state type", typeURL)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sn := s.snap.Load()
	version := sn.version + "-empty"
	body, err := encodeBody(sn.instance, version, t.url(), nil)
	if err != nil {
		return fmt.Errorf("push empty: %w", err)
	}
	r := &malformedResponse{t: t, version: version, body: body}
	for st := range s.streams {
		st.enqueue(queued{malformed: r})
	}
	s.log.Info("istiodsim empty push", "type", t, "streams", len(s.streams))
	return nil
}

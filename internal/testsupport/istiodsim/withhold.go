package istiodsim

import "fmt"

// Withhold makes the Sim stop answering typeURL (on) or answer it again
// (off, which does not resend what was withheld: the next push or request
// does): an upstream that is slow or stuck on one type, e.g. never answers
// EDS.
func (s *Sim) Withhold(typeURL string, on bool) error {
	t, ok := typeOf(typeURL)
	if !ok {
		return fmt.Errorf("withhold: type %q not served", typeURL)
	}
	s.withheld[t].Store(on)
	return nil
}

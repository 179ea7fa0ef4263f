package sotw

import (
	"maps"
	"slices"
)

// nameSet is a set of resource names.
type nameSet map[string]struct{}

func (s nameSet) has(name string) bool {
	_, ok := s[name]
	return ok
}

func (s nameSet) add(name string) { s[name] = struct{}{} }

// sorted returns the names in order, so that requests are deterministic.
func (s nameSet) sorted() []string {
	return slices.Sorted(maps.Keys(s))
}

// subscription is the set of names subscribed for one named resource type
// (EDS or RDS). It outlives streams: after a reconnect the client re-sends it
// as is, so the new stream gets everything at once.
type subscription struct {
	names nameSet
}

func newSubscription() *subscription {
	return &subscription{names: nameSet{}}
}

// replace makes next the subscribed set. It returns the names that left the
// subscription, sorted, and whether the set changed at all.
func (s *subscription) replace(next nameSet) (removed []string, changed bool) {
	for name := range s.names {
		if !next.has(name) {
			removed = append(removed, name)
		}
	}
	changed = len(removed) > 0 || len(next) != len(s.names)
	s.names = next
	slices.Sort(removed)
	return removed, changed
}

func (s *subscription) has(name string) bool { return s.names.has(name) }

func (s *subscription) len() int { return len(s.names) }

func (s *subscription) sorted() []string { return s.names.sorted() }

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
	// order is names sorted, built on first use after a change: every
	// ACK carries the whole subscription, and sorting 10,000 EDS names
	// for each one held every push back by several milliseconds.
	order []string
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
	s.order = nil
	slices.Sort(removed)
	return removed, changed
}

func (s *subscription) has(name string) bool { return s.names.has(name) }

func (s *subscription) len() int { return len(s.names) }

// sorted returns the subscribed names in order. The slice is shared until
// the next replace: callers must not modify it.
func (s *subscription) sorted() []string {
	if s.order == nil && len(s.names) > 0 {
		s.order = s.names.sorted()
	}
	return s.order
}

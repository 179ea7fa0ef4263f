package sotw

import (
	"slices"
	"testing"
)

// TestSubscriptionSortedFollowsReplace: the sorted names are cached
// between changes, and a replace (even to a set of the same size) is seen
// by the next call.
func TestSubscriptionSortedFollowsReplace(t *testing.T) {
	s := newSubscription()
	if got := s.sorted(); len(got) != 0 {
		t.Fatalf("empty subscription: %v", got)
	}
	s.replace(nameSet{"b": {}, "a": {}})
	if got := s.sorted(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("sorted = %v, want [a b]", got)
	}
	s.replace(nameSet{"c": {}, "a": {}})
	if got := s.sorted(); !slices.Equal(got, []string{"a", "c"}) {
		t.Fatalf("after replace: sorted = %v, want [a c]", got)
	}
	s.replace(nameSet{})
	if got := s.sorted(); len(got) != 0 {
		t.Fatalf("after emptying: sorted = %v", got)
	}
}

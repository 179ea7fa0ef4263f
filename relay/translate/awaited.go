package translate

import "github.com/meshrelay/meshrelay/internal/keyspace"

// AwaitedAssignments counts the EDS names read by clusters of the services
// keep accepts whose assignment has not arrived: until it does, those
// services' endpoints are unknown, not empty.
func (x *Index) AwaitedAssignments(keep func(keyspace.Service) bool) int {
	n := 0
	for eds, clusters := range x.byEDS {
		if _, ok := x.assignments[eds]; ok {
			continue
		}
		for _, sc := range clusters {
			if keep(sc.key) {
				n++
				break
			}
		}
	}
	return n
}

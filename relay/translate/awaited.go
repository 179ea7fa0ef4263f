package translate

import "github.com/meshrelay/meshrelay/internal/keyspace"

// AwaitedAssignments counts the EDS names read by clusters of the services
// keep accepts whose assignment the Index lacks and that pending says are
// still on their way (subscribed and not yet given up on, or received but
// not yet applied): until they are in, those services' endpoints are
// unknown, not empty.
func (x *Index) AwaitedAssignments(keep func(keyspace.Service) bool, pending func(eds string) bool) int {
	n := 0
	for eds, clusters := range x.byEDS {
		if _, ok := x.assignments[eds]; ok {
			continue
		}
		for _, sc := range clusters {
			if keep(sc.key) {
				if pending(eds) {
					n++
				}
				break
			}
		}
	}
	return n
}

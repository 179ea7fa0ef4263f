package istiodsim

import "fmt"

// mutate runs f with the Sim's mutex held and, if f succeeds, pushes what it
// changed (now, or after the debounce period).
func (s *Sim) mutate(f func() error) error {
	s.mu.Lock()
	if err := f(); err != nil {
		s.mu.Unlock()
		return err
	}
	info := s.pushLocked()
	s.mu.Unlock()
	s.notify(info)
	return nil
}

func (s *Sim) liveLocked(i int) (*service, error) {
	if i < 0 || i >= len(s.services) {
		return nil, fmt.Errorf("service %d: no such service", i)
	}
	svc := s.services[i]
	if svc.deleted {
		return nil, fmt.Errorf("service %d (%s/%s): deleted", i, svc.namespace, svc.name)
	}
	return svc, nil
}

// ChurnEndpoints replaces n endpoints of service svc, chosen at random, with
// new ones at new addresses, as pods rescheduled elsewhere. It causes a
// partial EDS push of that service's clusters only.
func (s *Sim) ChurnEndpoints(svc, n int) error {
	return s.mutate(func() error {
		sv, err := s.liveLocked(svc)
		if err != nil {
			return fmt.Errorf("churn: %w", err)
		}
		if n < 0 || n > len(sv.endpoints) {
			return fmt.Errorf("churn service %d: %d of %d endpoints", svc, n, len(sv.endpoints))
		}
		for _, k := range s.gen.rng.Perm(len(sv.endpoints))[:n] {
			sv.endpoints[k] = s.gen.endpoint()
		}
		s.endpointsChangedLocked(sv)
		return nil
	})
}

// SetEndpoints scales service svc to n endpoints, adding new endpoints or
// removing the last ones. It causes a partial EDS push of that service.
func (s *Sim) SetEndpoints(svc, n int) error {
	return s.mutate(func() error {
		sv, err := s.liveLocked(svc)
		if err != nil {
			return fmt.Errorf("set endpoints: %w", err)
		}
		if n < 0 {
			return fmt.Errorf("set endpoints of service %d: negative count %d", svc, n)
		}
		sv.endpoints = sv.endpoints[:min(n, len(sv.endpoints))]
		for len(sv.endpoints) < n {
			sv.endpoints = append(sv.endpoints, s.gen.endpoint())
		}
		s.endpointsChangedLocked(sv)
		return nil
	})
}

// RemoveEndpoints removes each endpoint of every service with probability
// fraction, as the failure of a share of the nodes does, and returns how
// many it removed. Every service that lost endpoints is in one partial EDS
// push. RestoreEndpoints brings them back.
func (s *Sim) RemoveEndpoints(fraction float64) (int, error) {
	if fraction < 0 || fraction > 1 {
		return 0, fmt.Errorf("remove endpoints: fraction %v not in [0, 1]", fraction)
	}
	removed := 0
	err := s.mutate(func() error {
		for _, sv := range s.services {
			if sv.deleted {
				continue
			}
			kept := make([]endpoint, 0, len(sv.endpoints))
			for _, ep := range sv.endpoints {
				if s.gen.rng.Float64() < fraction {
					s.removed = append(s.removed, removedEndpoint{service: sv.index, endpoint: ep})
					continue
				}
				kept = append(kept, ep)
			}
			if len(kept) != len(sv.endpoints) {
				removed += len(sv.endpoints) - len(kept)
				sv.endpoints = kept
				s.endpointsChangedLocked(sv)
			}
		}
		return nil
	})
	return removed, err
}

// RestoreEndpoints puts back every endpoint RemoveEndpoints removed (of
// services not deleted since) and returns how many.
func (s *Sim) RestoreEndpoints() int {
	restored := 0
	_ = s.mutate(func() error {
		for _, r := range s.removed {
			sv := s.services[r.service]
			if sv.deleted {
				continue
			}
			sv.endpoints = append(sv.endpoints, r.endpoint)
			s.endpointsChangedLocked(sv)
			restored++
		}
		s.removed = nil
		return nil
	})
	return restored
}

// MoveEndpoint moves the last endpoint of service from to service to,
// keeping its address: the same workload changes service. It causes a
// partial EDS push of both services.
func (s *Sim) MoveEndpoint(from, to int) error {
	return s.mutate(func() error {
		src, err := s.liveLocked(from)
		if err != nil {
			return fmt.Errorf("move endpoint: %w", err)
		}
		dst, err := s.liveLocked(to)
		if err != nil {
			return fmt.Errorf("move endpoint: %w", err)
		}
		if len(src.endpoints) == 0 || from == to {
			return fmt.Errorf("move endpoint of service %d to %d: nothing to move", from, to)
		}
		ep := src.endpoints[len(src.endpoints)-1]
		src.endpoints = src.endpoints[:len(src.endpoints)-1]
		dst.endpoints = append(dst.endpoints, ep)
		s.endpointsChangedLocked(src)
		s.endpointsChangedLocked(dst)
		return nil
	})
}

// AddServices adds n services with the configured endpoints and returns
// their indexes. It causes a full CDS, LDS and RDS push and an EDS push of
// the new clusters.
func (s *Sim) AddServices(n int) ([]int, error) {
	var added []int
	err := s.mutate(func() error {
		if n < 0 || len(s.services)+n > MaxServices {
			return fmt.Errorf("add %d services to %d: more than %d do not fit in 127.77.0.0/16", n, len(s.services), MaxServices)
		}
		for range n {
			sv := s.gen.service(len(s.services))
			s.services = append(s.services, sv)
			added = append(added, sv.index)
			s.serviceChangedLocked(sv)
		}
		return nil
	})
	return added, err
}

// DeleteService deletes service svc. It causes a full CDS, LDS and RDS
// push; its clusters' assignments are no longer sent.
func (s *Sim) DeleteService(svc int) error {
	return s.mutate(func() error {
		sv, err := s.liveLocked(svc)
		if err != nil {
			return fmt.Errorf("delete: %w", err)
		}
		sv.deleted = true
		s.serviceChangedLocked(sv)
		return nil
	})
}

// Repush pushes everything in full with a new version and unchanged content,
// as Istiod does on a global config change.
func (s *Sim) Repush() {
	_ = s.mutate(func() error {
		s.pending.full = allTypes
		return nil
	})
}

// DeleteServices deletes every service of svcs in one change: one full CDS,
// LDS and RDS push.
func (s *Sim) DeleteServices(svcs ...int) error {
	return s.mutate(func() error {
		for _, i := range svcs {
			if _, err := s.liveLocked(i); err != nil {
				return fmt.Errorf("delete: %w", err)
			}
		}
		for _, i := range svcs {
			sv := s.services[i]
			sv.deleted = true
			s.serviceChangedLocked(sv)
		}
		return nil
	})
}

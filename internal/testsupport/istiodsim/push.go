package istiodsim

import (
	"maps"
	"slices"
	"time"
)

// change accumulates what mutations changed since the last push.
type change struct {
	// full are the types to push in full: every resource a stream watches.
	full typeSet
	// clusters are the EDS clusters whose assignments changed, pushed
	// partially (Istiod's incremental EDS) unless EDS is in full.
	clusters map[string]struct{}
	// services are the services the push carries changes of.
	services map[int]struct{}
	// endpoints are the services whose EDS resources must be rebuilt;
	// specs those whose every resource must be rebuilt.
	endpoints map[int]struct{}
	specs     map[int]struct{}
	// layout is set when services were added or deleted.
	layout bool
}

func (c *change) empty() bool {
	return c.full == 0 && len(c.clusters) == 0 && len(c.services) == 0 && !c.layout
}

func addTo(m *map[int]struct{}, i int) {
	if *m == nil {
		*m = map[int]struct{}{}
	}
	(*m)[i] = struct{}{}
}

// endpointsChangedLocked notes that svc's endpoints changed: a partial EDS
// push of its clusters.
func (s *Sim) endpointsChangedLocked(svc *service) {
	if s.pending.clusters == nil {
		s.pending.clusters = map[string]struct{}{}
	}
	for _, n := range clusterNames(svc, s.opts.SubsetClusters) {
		s.pending.clusters[n] = struct{}{}
	}
	addTo(&s.pending.services, svc.index)
	addTo(&s.pending.endpoints, svc.index)
}

// serviceChangedLocked notes that svc was added or deleted: a full CDS, LDS
// and RDS push, plus EDS of its clusters (for an added service), as Istiod
// does for a ServiceEntry-only change.
func (s *Sim) serviceChangedLocked(svc *service) {
	s.pending.full |= setOf(cdsType, ldsType, rdsType)
	s.pending.layout = true
	addTo(&s.pending.services, svc.index)
	if !svc.deleted {
		s.endpointsChangedLocked(svc)
		addTo(&s.pending.specs, svc.index)
	}
}

// pushLocked pushes the pending change now, or when the debounce period
// says so. It returns what the caller must pass to notify after unlocking.
func (s *Sim) pushLocked() *PushInfo {
	if s.opts.Debounce == 0 {
		return s.flushLocked()
	}
	now := time.Now()
	s.last = now
	if s.timer == nil {
		s.first = now
		s.timer = time.AfterFunc(s.opts.Debounce, s.debounced)
	}
	return nil
}

// debounced runs when the debounce timer fires: it pushes if changes have
// been quiet for the debounce period or kept coming for MaxDebounce, and
// waits again otherwise.
func (s *Sim) debounced() {
	s.mu.Lock()
	if s.timer == nil { // flushed meanwhile
		s.mu.Unlock()
		return
	}
	now := time.Now()
	quiet, waited := now.Sub(s.last), now.Sub(s.first)
	if quiet < s.opts.Debounce && waited < s.opts.MaxDebounce {
		s.timer.Reset(min(s.opts.Debounce-quiet, s.opts.MaxDebounce-waited))
		s.mu.Unlock()
		return
	}
	info := s.flushLocked()
	s.mu.Unlock()
	s.notify(info)
}

// flushLocked rebuilds what the pending change touched, publishes a new
// snapshot and hands the push to every stream. It returns nil if nothing
// was pending.
func (s *Sim) flushLocked() *PushInfo {
	if s.timer != nil {
		// A callback already waiting for mu sees timer == nil and returns,
		// or, if a later change started a new timer, merely re-checks the
		// quiet period of that change.
		s.timer.Stop()
		s.timer = nil
	}
	c := s.pending
	s.pending = change{}
	if c.empty() {
		return nil
	}
	var rebuild []*service
	for i := range c.specs {
		if svc := s.services[i]; !svc.deleted {
			rebuild = append(rebuild, svc)
		}
	}
	buildAll(rebuild, s.opts.SubsetClusters)
	for i := range c.endpoints {
		if _, done := c.specs[i]; done {
			continue
		}
		if svc := s.services[i]; !svc.deleted {
			svc.res = svc.res.withLoads(svc)
		}
	}
	if c.layout {
		s.layout = nil
	}
	sn := s.publishLocked()
	now := time.Now()
	services := slices.Sorted(maps.Keys(c.services))
	for _, i := range services {
		s.services[i].pushedAt = now
	}
	req := &pushRequest{full: c.full}
	if !c.full.has(edsType) {
		req.clusters = slices.Sorted(maps.Keys(c.clusters))
	}
	for st := range s.streams {
		st.enqueue(queued{push: req})
	}
	for st := range s.deltas {
		st.wakeUp()
	}
	s.pushes++
	s.log.Debug("istiodsim push", "version", sn.version, "services", len(services), "full", c.full.urls(), "clusters", len(req.clusters), "streams", len(s.streams))
	if s.opts.OnPush == nil {
		return nil
	}
	return &PushInfo{Version: sn.version, Time: now, Services: services, Full: c.full.urls()}
}

// notify calls Options.OnPush, without the Sim's mutex held.
func (s *Sim) notify(info *PushInfo) {
	if info != nil && s.opts.OnPush != nil {
		s.opts.OnPush(*info)
	}
}

// pushRequest is what a stream must send for one push, or for several pushes
// merged while the stream was busy. It is immutable and shared by streams.
type pushRequest struct {
	full typeSet
	// clusters are the sorted names of the EDS clusters to push partially.
	clusters []string
}

// merge returns a request covering both p and q.
func (p *pushRequest) merge(q *pushRequest) *pushRequest {
	m := &pushRequest{full: p.full | q.full}
	if m.full.has(edsType) {
		return m
	}
	m.clusters = make([]string, 0, len(p.clusters)+len(q.clusters))
	a, b := p.clusters, q.clusters
	for len(a) > 0 && len(b) > 0 {
		switch {
		case a[0] < b[0]:
			m.clusters, a = append(m.clusters, a[0]), a[1:]
		case a[0] > b[0]:
			m.clusters, b = append(m.clusters, b[0]), b[1:]
		default:
			m.clusters, a, b = append(m.clusters, a[0]), a[1:], b[1:]
		}
	}
	m.clusters = append(append(m.clusters, a...), b...)
	return m
}

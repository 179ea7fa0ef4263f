package roles

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/scale-tests/internal/control"
	"github.com/meshrelay/meshrelay/scale-tests/internal/gate"
	"github.com/meshrelay/meshrelay/scale-tests/internal/launch"
	"github.com/meshrelay/meshrelay/scale-tests/internal/measure"
)

// simRole is the Istiod simulator process: the simulator, the recorder of
// what it pushed, and the mutations the scenarios ask for. One mutation
// runs at a time.
type simRole struct {
	sim     *istiodsim.Sim
	rec     *measure.Recorder
	log     *slog.Logger
	op      sync.Mutex
	changed atomic.Int64
}

func runSimRole(ctx context.Context, raw []byte, ctl *control.Server, log *slog.Logger, ready func(string)) error {
	cfg, err := launch.DecodeConfig[SimConfig](raw)
	if err != nil {
		return err
	}
	r := &simRole{log: log}
	var hook atomic.Pointer[measure.Recorder]
	sim, err := istiodsim.New(istiodsim.Options{
		Services:            cfg.Services,
		EndpointsPerService: cfg.EndpointsPerService,
		Namespaces:          cfg.Namespaces,
		PortsPerService:     cfg.PortsPerService,
		Weights:             cfg.Weights,
		Seed:                cfg.Seed,
		Debounce:            cfg.Debounce,
		OnPush: func(info istiodsim.PushInfo) {
			if rec := hook.Load(); rec != nil {
				rec.OnPush(info)
			}
		},
		Logger: log,
	})
	if err != nil {
		return err
	}
	r.sim = sim
	r.rec = measure.NewRecorder(sim)
	hook.Store(r.rec)
	if err := sim.Start("127.0.0.1:0"); err != nil {
		return err
	}
	defer sim.Stop()

	control.Handle(ctl, "stats", func(ctx context.Context, _ struct{}) (SimStats, error) { return r.stats(), nil })
	control.Handle(ctl, "truth", func(ctx context.Context, _ struct{}) (gate.Truth, error) { return gate.FromSim(sim.Truth()), nil })
	control.Handle(ctl, "events", func(ctx context.Context, req EventsRequest) (EventsResult, error) {
		evs, unstamped := r.rec.EventsFrom(req.From)
		return EventsResult{Events: evs, Unstamped: unstamped}, nil
	})
	control.Handle(ctl, "churn", r.churn)
	control.Handle(ctl, "fail", func(ctx context.Context, req FailRequest) (CountResult, error) {
		return exclusive(r, func() (CountResult, error) {
			after := r.rec.Mark()
			n, err := sim.RemoveEndpoints(req.Fraction)
			r.rec.RecordAll(after)
			r.changed.Add(int64(n))
			return CountResult{N: n}, err
		})
	})
	control.Handle(ctl, "restore", func(ctx context.Context, _ struct{}) (CountResult, error) {
		return exclusive(r, func() (CountResult, error) {
			after := r.rec.Mark()
			n := sim.RestoreEndpoints()
			r.rec.RecordAll(after)
			r.changed.Add(int64(n))
			return CountResult{N: n}, nil
		})
	})
	control.Handle(ctl, "scale", r.scale)
	control.Handle(ctl, "restart", func(ctx context.Context, _ struct{}) (struct{}, error) {
		return exclusive(r, func() (struct{}, error) { return struct{}{}, sim.Restart() })
	})
	control.Handle(ctl, "repush", func(ctx context.Context, _ struct{}) (struct{}, error) {
		return exclusive(r, func() (struct{}, error) { sim.Repush(); return struct{}{}, nil })
	})
	ready(sim.Addr())
	<-ctx.Done()
	return ctx.Err()
}

// exclusive runs f unless another mutation is running.
func exclusive[T any](r *simRole, f func() (T, error)) (T, error) {
	if !r.op.TryLock() {
		var zero T
		return zero, errors.New("another mutation is running")
	}
	defer r.op.Unlock()
	return f()
}

func (r *simRole) stats() SimStats {
	events, changes, last := r.rec.Counters()
	_, endpoints := r.rec.Live()
	return SimStats{
		Istiod:         r.sim.Stats(),
		Streams:        r.sim.Streams() + r.sim.DeltaStreams(),
		DeltaStreams:   r.sim.DeltaStreams(),
		Services:       len(endpoints),
		Violations:     len(r.sim.Violations()),
		Nacks:          len(r.sim.Nacks()),
		Events:         events,
		ServiceChanges: changes,
		LastPush:       last,
		Changed:        r.changed.Load(),
	}
}

// churnTick is how often churn makes its changes; recordEvery how often
// it records them (each recording copies the simulator's whole truth).
const (
	churnTick   = 100 * time.Millisecond
	recordEvery = 500 * time.Millisecond
)

// churn changes endpoints at req.Rate per second for req.Duration: single
// endpoints of random services (steady state), or every endpoint of one
// service after another (rolling restart; a service's endpoints are all
// replaced in one change, as a Deployment whose new pods become ready
// together).
func (r *simRole) churn(ctx context.Context, req ChurnRequest) (ChurnResult, error) {
	return exclusive(r, func() (ChurnResult, error) {
		var res ChurnResult
		if req.Rate <= 0 || req.Duration <= 0 {
			return res, fmt.Errorf("churn: rate %v and duration %v must be positive", req.Rate, req.Duration)
		}
		rng := rand.New(rand.NewPCG(uint64(req.Seed), 0x636875726e))
		live, endpoints := r.rec.Live()
		if len(live) == 0 {
			return res, errors.New("churn: no services")
		}
		order := live
		if req.Rolling {
			order = append([]int(nil), live...)
			rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		}
		next := 0
		tick := time.NewTicker(churnTick)
		defer tick.Stop()
		start := time.Now()
		last := start
		budget := 0.0
		marks := map[int]uint64{}
		flush := func() {
			if len(marks) > 0 {
				r.rec.Record(marks)
				marks = map[int]uint64{}
			}
		}
		defer flush()
		lastRecord := start
		for time.Since(start) < req.Duration {
			now := time.Now()
			budget += req.Rate * now.Sub(last).Seconds()
			last = now
			for budget >= 1 {
				if req.Rolling {
					if next == len(order) {
						break
					}
					svc := order[next]
					next++
					n := endpoints[svc]
					marks[svc] = r.rec.Mark()
					if err := r.sim.ChurnEndpoints(svc, n); err != nil {
						return res, err
					}
					budget -= float64(n)
					res.Endpoints += n
					res.Services++
					r.changed.Add(int64(n))
					continue
				}
				svc := live[rng.IntN(len(live))]
				if endpoints[svc] == 0 {
					budget--
					continue
				}
				if _, again := marks[svc]; !again {
					marks[svc] = r.rec.Mark()
				}
				if err := r.sim.ChurnEndpoints(svc, 1); err != nil {
					return res, err
				}
				budget--
				res.Endpoints++
				res.Services++
				r.changed.Add(1)
			}
			if now.Sub(lastRecord) >= recordEvery {
				flush()
				lastRecord = now
			}
			if req.Rolling && next == len(order) {
				res.Complete = true
				break
			}
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-tick.C:
			}
		}
		return res, nil
	})
}

// scale adds services in batches until there are req.Target, one batch
// every req.Interval.
func (r *simRole) scale(ctx context.Context, req ScaleRequest) (CountResult, error) {
	return exclusive(r, func() (CountResult, error) {
		var res CountResult
		if req.Batch <= 0 {
			return res, fmt.Errorf("scale: batch %d", req.Batch)
		}
		for {
			live, _ := r.rec.Live()
			n := min(req.Batch, req.Target-len(live))
			if n <= 0 {
				return res, nil
			}
			after := r.rec.Mark()
			added, err := r.sim.AddServices(n)
			if err != nil {
				return res, err
			}
			marks := make(map[int]uint64, len(added))
			for _, i := range added {
				marks[i] = after
			}
			r.rec.Record(marks)
			res.N += len(added)
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(req.Interval):
			}
		}
	})
}

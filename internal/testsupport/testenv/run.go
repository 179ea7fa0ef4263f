package testenv

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// stopWait bounds how long Stop waits for a run to return after its
// context was cancelled.
const stopWait = 20 * time.Second

// Running is something started by Run: its Stop cancels it and waits for
// it to return, and Done delivers what it returned.
type Running struct {
	cancel   context.CancelFunc
	finished chan struct{}
	err      error
	stopped  atomic.Bool // Stop was called by the test: cleanup reports nothing more
}

// Run calls run in a goroutine with a context that the test's cleanup (or
// Stop) cancels, and fails the test if run does not return within 20 s of
// that. An error other than a cancellation after the stop fails the test.
func Run(tb testing.TB, run func(ctx context.Context) error) *Running {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &Running{cancel: cancel, finished: make(chan struct{})}
	go func() {
		defer close(r.finished)
		r.err = run(ctx)
	}()
	tb.Cleanup(func() {
		if r.stopped.Load() {
			r.cancel()
			return
		}
		if err := r.stop(); err != nil {
			tb.Errorf("run returned %v", err)
		}
	})
	return r
}

// Done is closed when run has returned; Err then says what it returned.
func (r *Running) Done() <-chan struct{} { return r.finished }

// Err is run's result once Done is closed, nil before.
func (r *Running) Err() error {
	select {
	case <-r.finished:
		return r.err
	default:
		return nil
	}
}

// Stop cancels run and waits up to 20 s for it to return. It returns run's
// error unless that is the cancellation Stop caused. Stop may be called
// more than once.
func (r *Running) Stop() error {
	r.stopped.Store(true)
	return r.stop()
}

func (r *Running) stop() error {
	r.cancel()
	select {
	case <-r.finished:
	case <-time.After(stopWait):
		return errors.New("did not return within 20 s of its context being cancelled")
	}
	if errors.Is(r.err, context.Canceled) {
		return nil
	}
	return r.err
}

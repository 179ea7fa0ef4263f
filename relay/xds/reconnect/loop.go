package reconnect

import (
	"context"
	"log/slog"
	"time"

	"github.com/meshrelay/meshrelay/internal/backoff"
)

// Stream runs one stream until it fails or ctx ends. It reports whether the
// stream was healthy (accepted a response) and the error that ended it.
type Stream func(ctx context.Context) (healthy bool, err error)

// Loop runs stream again and again until ctx is done, waiting a jittered
// exponential backoff (bo) between two runs, and returns ctx.Err(). A stream
// that was healthy or lived at least bo.Max resets the backoff: after, e.g.,
// Istiod's periodic GOAWAY the next stream opens fast. onEnd, when not nil,
// is called with the error of every run that ended before ctx; the end is
// logged at warning level (info for a healthy stream) with address.
func Loop(ctx context.Context, log *slog.Logger, address string, bo backoff.Options, stream Stream, onEnd func(error)) error {
	bo = bo.WithDefaults()
	b := backoff.New(bo)
	for {
		opened := time.Now()
		healthy, err := stream(ctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if healthy || time.Since(opened) >= bo.Max {
			b.Reset()
		}
		delay := b.Next()
		if onEnd != nil {
			onEnd(err)
		}
		level := slog.LevelWarn
		if healthy {
			level = slog.LevelInfo
		}
		log.Log(ctx, level, "xds stream ended", "address", address, "error", err,
			"lived", time.Since(opened).Round(time.Millisecond), "retry_in", delay.Round(time.Millisecond))
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

package testenv

import (
	"log/slog"
	"os"
	"testing"
)

// Logger returns a debug logger to stderr under `go test -v`, and a logger
// that discards everything otherwise. attrs are added to every record
// (e.g. "c", "relay-0").
func Logger(tb testing.TB, attrs ...any) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).
		With("test", tb.Name()).With(attrs...)
}

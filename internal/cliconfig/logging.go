package cliconfig

import (
	"io"
	"log/slog"
)

// Logger builds the process logger from --log-level (debug, info, warn,
// error) and --log-format (text, json), recording a bad value in r.
func (r *Reader) Logger(w io.Writer) *slog.Logger {
	var level slog.Level
	switch s := r.OneOf("log-level", "debug", "info", "warn", "error"); s {
	case "debug":
		level = slog.LevelDebug
	case "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		level = slog.LevelInfo
	}
	ho := &slog.HandlerOptions{Level: level}
	if r.OneOf("log-format", "text", "json") == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

package cliconfig

import (
	"io"
	"log/slog"
)

// Logger builds the process logger from --log-level (debug, info, warn,
// error) and --log-format (text, json), recording a bad value in r.
func (r *Reader) Logger(w io.Writer) *slog.Logger {
	l := Log{Level: r.OneOf("log-level", "debug", "info", "warn", "error"), Format: r.OneOf("log-format", logFormats...)}
	return l.Logger(w)
}

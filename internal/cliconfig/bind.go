package cliconfig

import (
	"context"
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Configurable is a main's configuration struct: Bind binds its fields to
// flags, Validate checks them after Overlay, returning a *UsageError (see
// Invalid) that names the flag.
type Configurable interface {
	Bind(fs *pflag.FlagSet)
	Validate() error
}

// Bound returns a cobra command that binds cfg to its flags and, when run,
// overlays the environment and the --config file (Overlay), validates cfg
// and calls run. Flag errors are usage errors (exit 2); errors are
// returned, never printed by cobra.
func Bound(cmd *cobra.Command, cfg Configurable, run func(ctx context.Context, args []string) error) *cobra.Command {
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UsageError{Msg: err.Error()} })
	cfg.Bind(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if err := Overlay(cmd.Flags()); err != nil {
			return err
		}
		if err := cfg.Validate(); err != nil {
			return err
		}
		return run(cmd.Context(), args)
	}
	return cmd
}

// Log is --log-level and --log-format.
type Log struct {
	Level, Format string
}

// Bind adds the log flags to fs, bound to l.
func (l *Log) Bind(fs *pflag.FlagSet) {
	fs.StringVar(&l.Level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&l.Format, "log-format", "text", "text or json")
}

var (
	logLevels  = map[string]slog.Level{"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError}
	logFormats = []string{"text", "json"}
)

// Validate checks the level and format names.
func (l *Log) Validate() error {
	if _, ok := logLevels[l.Level]; !ok {
		return Invalid("log-level", l.Level, "want one of debug, info, warn, error")
	}
	return OneOf("log-format", l.Format, logFormats...)
}

// Logger builds the process logger writing to w. An unknown level is info,
// an unknown format text (Validate reports them).
func (l *Log) Logger(w io.Writer) *slog.Logger {
	ho := &slog.HandlerOptions{Level: logLevels[l.Level]}
	if l.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, ho))
	}
	return slog.New(slog.NewTextHandler(w, ho))
}

// OneOf returns a *UsageError for flag unless value is one of allowed.
func OneOf(flag, value string, allowed ...string) error {
	for _, a := range allowed {
		if value == a {
			return nil
		}
	}
	return Invalid(flag, value, "want one of "+strings.Join(allowed, ", "))
}

// ConfigFile is --config, the YAML file Overlay reads.
type ConfigFile struct{ Path string }

// Bind adds --config to fs.
func (c *ConfigFile) Bind(fs *pflag.FlagSet) {
	fs.StringVar(&c.Path, ConfigFlag, "", "YAML file of flag values (keys are flag names)")
}

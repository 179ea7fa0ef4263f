package cliconfig

import (
	"context"

	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/etcddial"
	"github.com/meshrelay/meshrelay/internal/keyspace"
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

// Etcd is the etcd connection configuration every binary shares:
// --cluster, --etcd-endpoints and the etcd TLS files.
type Etcd struct {
	Cluster                   string
	Endpoints                 []string
	CAFile, CertFile, KeyFile string
}

// Bind adds the etcd flags to fs, bound to e.
func (e *Etcd) Bind(fs *pflag.FlagSet, endpointsHelp string) {
	fs.StringVar(&e.Cluster, "cluster", keyspace.DefaultCluster, "cluster id: keys live under /meshrelay/v1/<cluster>/")
	fs.StringSliceVar(&e.Endpoints, "etcd-endpoints", nil, endpointsHelp)
	fs.StringVar(&e.CAFile, "etcd-ca", "", "etcd TLS: CA file")
	fs.StringVar(&e.CertFile, "etcd-cert", "", "etcd TLS: client certificate file")
	fs.StringVar(&e.KeyFile, "etcd-key", "", "etcd TLS: client key file")
}

// Validate checks the cluster id (one key segment) and that the endpoints
// and TLS files make one secure or one plaintext configuration: every
// endpoint has the same scheme, TLS files never go with an http://
// endpoint, and --etcd-cert and --etcd-key come together. Peers are always
// verified (docs/contract.md, section 4).
func (e *Etcd) Validate() error {
	if e.Cluster == "" || strings.Contains(e.Cluster, "/") {
		return Invalid("cluster", e.Cluster, "want a non-empty id without '/'")
	}
	if (e.CertFile == "") != (e.KeyFile == "") {
		return Invalid("etcd-cert", e.CertFile, "--etcd-cert and --etcd-key go together")
	}
	scheme := ""
	for i, ep := range e.Endpoints {
		sc, _, found := strings.Cut(ep, "://")
		if !found {
			sc = ""
		}
		switch sc {
		case "", "http", "https":
		default:
			return Invalid("etcd-endpoints", ep, "want http://, https:// or host:port")
		}
		if i > 0 && sc != scheme {
			return Invalid("etcd-endpoints", strings.Join(e.Endpoints, ","), "endpoints mix schemes; use one")
		}
		scheme = sc
	}
	if e.TLS() && scheme == "http" {
		return Invalid("etcd-endpoints", strings.Join(e.Endpoints, ","), "--etcd-ca/--etcd-cert/--etcd-key need https:// endpoints, not http://")
	}
	return nil
}

// TLS reports whether a TLS file flag is set.
func (e *Etcd) TLS() bool { return e.CAFile != "" || e.CertFile != "" || e.KeyFile != "" }

// Dial opens an etcd client for endpoints (e.Endpoints, or the embedded
// etcd's) with e's TLS files.
func (e *Etcd) Dial(endpoints []string, log *slog.Logger) (*clientv3.Client, error) {
	return etcddial.Dial(etcddial.Options{
		Endpoints: endpoints,
		CAFile:    e.CAFile, CertFile: e.CertFile, KeyFile: e.KeyFile,
		Logger: log,
	})
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

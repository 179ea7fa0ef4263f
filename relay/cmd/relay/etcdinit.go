package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
	"github.com/meshrelay/meshrelay/relay/etcdinit"
)

// etcdInitConfig is `relay etcd-init`'s configuration.
type etcdInitConfig struct {
	File cliconfig.ConfigFile
	Etcd cliconfig.Etcd
	Log  cliconfig.Log

	RootPasswordFile, RelayPasswordFile, AgentPasswordFile string
	Interval                                               time.Duration
	PublishConfigMap                                       string
}

func (c *etcdInitConfig) Bind(fs *pflag.FlagSet) {
	c.File.Bind(fs)
	c.Etcd.Bind(fs, "etcd endpoints (comma-separated); required")
	c.Log.Bind(fs)
	fs.StringVar(&c.RootPasswordFile, "root-password-file", "", "file holding the password of etcd user root (required)")
	fs.StringVar(&c.RelayPasswordFile, "relay-password-file", "", "file holding the password of etcd user meshrelay-relay (required)")
	fs.StringVar(&c.AgentPasswordFile, "agent-password-file", "", "file holding the password of etcd user meshrelay-agent (required)")
	fs.DurationVar(&c.Interval, "interval", 0, "check and repair again this often, until stopped (0: run once and exit)")
	fs.StringVar(&c.PublishConfigMap, "publish-endpoints-configmap", "", "write the members' client URLs (comma-separated) into key 'endpoints' of this ConfigMap in $POD_NAMESPACE, with the pod's service account")
}

func (c *etcdInitConfig) Validate() error {
	if err := c.Log.Validate(); err != nil {
		return err
	}
	if len(c.Etcd.Endpoints) == 0 && c.Etcd.EndpointsFile == "" {
		return cliconfig.Invalid("etcd-endpoints", "", "required")
	}
	for flag, v := range map[string]string{"root-password-file": c.RootPasswordFile, "relay-password-file": c.RelayPasswordFile, "agent-password-file": c.AgentPasswordFile} {
		if v == "" {
			return cliconfig.Invalid(flag, "", "required")
		}
	}
	if c.Interval < 0 {
		return cliconfig.Invalid("interval", c.Interval, "want >= 0")
	}
	if c.PublishConfigMap != "" && os.Getenv("POD_NAMESPACE") == "" {
		return cliconfig.Invalid("publish-endpoints-configmap", c.PublishConfigMap, "needs $POD_NAMESPACE")
	}
	return c.Etcd.Validate()
}

func newEtcdInitCommand(stderr io.Writer) *cobra.Command {
	cfg := &etcdInitConfig{}
	return cliconfig.Bound(&cobra.Command{
		Use:   "etcd-init",
		Short: "Create etcd's meshrelay users and roles and enable auth (idempotent)",
		Long: `etcd-init creates role meshrelay-relay (read-write on /meshrelay/v1/) and role
meshrelay-agent (read-only on /meshrelay/v1/), users of the same names with
the passwords of --relay-password-file and --agent-password-file, user root
with the password of --root-password-file, and enables auth. Against an etcd
already in that state it changes nothing; runs racing each other all succeed.
With client-certificate auth, etcd's user is the certificate's CN: the relay's
and agent's certificates carry CN meshrelay-relay and meshrelay-agent.

Once auth is on it needs root: the root client certificate (--etcd-cert) or,
failing that, user root with the root password.`,
		Args: cobra.NoArgs,
	}, cfg, func(ctx context.Context, _ []string) error {
		return runEtcdInit(ctx, cfg, stderr)
	})
}

// etcdInitRetry is how soon a failed run is retried with --interval.
const etcdInitRetry = 5 * time.Second

func runEtcdInit(ctx context.Context, cfg *etcdInitConfig, stderr io.Writer) error {
	log := cfg.Log.Logger(stderr)
	opts := etcdinit.Options{Logger: log}
	for _, p := range []struct {
		flag, path string
		dst        *string
	}{
		{"root-password-file", cfg.RootPasswordFile, &opts.RootPassword},
		{"relay-password-file", cfg.RelayPasswordFile, &opts.RelayPassword},
		{"agent-password-file", cfg.AgentPasswordFile, &opts.AgentPassword},
	} {
		pw, err := cliconfig.ReadSecretFile(p.path)
		if err != nil {
			return cliconfig.Invalid(p.flag, p.path, err.Error())
		}
		*p.dst = pw
	}
	endpoints := cfg.Etcd.Endpoints
	if cfg.Etcd.EndpointsFile != "" {
		var err error
		if endpoints, err = cfg.Etcd.FileEndpoints(); err != nil {
			return err
		}
	}
	var cm *etcdinit.ConfigMap
	if cfg.PublishConfigMap != "" {
		var err error
		if cm, err = etcdinit.InClusterConfigMap(os.Getenv("POD_NAMESPACE"), cfg.PublishConfigMap); err != nil {
			return cliconfig.Invalid("publish-endpoints-configmap", cfg.PublishConfigMap, err.Error())
		}
	}
	in := &initRunner{cfg: cfg, endpoints: endpoints, opts: opts, cm: cm, log: log}
	defer in.close()
	for {
		err := in.once(ctx)
		if cfg.Interval == 0 {
			return err
		}
		wait := cfg.Interval
		if err != nil {
			log.Error("etcd-init failed; retrying", "err", err, "in", min(wait, etcdInitRetry))
			wait = min(wait, etcdInitRetry)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
}

// initRunner runs etcdinit.Init, as root once the flags' identity is not
// enough (auth already on, no root certificate).
type initRunner struct {
	cfg       *etcdInitConfig
	endpoints []string
	opts      etcdinit.Options
	cm        *etcdinit.ConfigMap
	log       *slog.Logger

	client, root *clientv3.Client
}

func (in *initRunner) close() {
	for _, c := range []*clientv3.Client{in.client, in.root} {
		if c != nil {
			c.Close()
		}
	}
}

func (in *initRunner) once(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c, err := in.current()
	if err != nil {
		return err
	}
	changed, err := etcdinit.Init(ctx, c.Auth, in.opts)
	if err != nil && in.root == nil && in.cfg.Etcd.Username == "" && needsRoot(err) {
		in.log.Info("etcd-init: auth is on and this identity is not root; using user root")
		etcd := in.cfg.Etcd
		etcd.Username, etcd.PasswordFile = etcdinit.Root, in.cfg.RootPasswordFile
		if in.root, err = etcd.Dial(in.endpoints, in.log); err != nil {
			return err
		}
		c = in.root
		changed, err = etcdinit.Init(ctx, c.Auth, in.opts)
	}
	if err != nil {
		return fmt.Errorf("etcd-init: %w", err)
	}
	if len(changed) == 0 {
		in.log.Debug("etcd-init: users, roles and auth already in place")
	}
	if in.cm == nil {
		return nil
	}
	eps, err := etcdinit.MemberEndpoints(ctx, c.Cluster)
	if err != nil {
		return err
	}
	wrote, err := in.cm.Publish(ctx, "endpoints", strings.Join(eps, ","))
	if err != nil {
		return fmt.Errorf("publish etcd endpoints: %w", err)
	}
	if wrote {
		in.log.Info("etcd-init: published etcd endpoints", "configmap", in.cfg.PublishConfigMap, "endpoints", eps)
	}
	return nil
}

func (in *initRunner) current() (*clientv3.Client, error) {
	if in.root != nil {
		return in.root, nil
	}
	if in.client == nil {
		c, err := in.cfg.Etcd.Dial(in.endpoints, in.log)
		if err != nil {
			return nil, err
		}
		in.client = c
	}
	return in.client, nil
}

// needsRoot reports whether err says the identity lacks the rights.
func needsRoot(err error) bool {
	return errors.Is(err, rpctypes.ErrUserEmpty) || errors.Is(err, rpctypes.ErrPermissionDenied)
}

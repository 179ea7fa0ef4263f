package cliconfig

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/etcddial"
	"github.com/meshrelay/meshrelay/internal/keyspace"
)

// Etcd is the etcd connection configuration every binary shares:
// --cluster, --etcd-endpoints (or --etcd-endpoints-file), the etcd TLS
// files and server name, and the etcd user (password auth).
type Etcd struct {
	Cluster                   string
	Endpoints                 []string
	EndpointsFile             string
	CAFile, CertFile, KeyFile string
	ServerName                string
	Username, PasswordFile    string
}

// Bind adds the etcd flags to fs, bound to e.
func (e *Etcd) Bind(fs *pflag.FlagSet, endpointsHelp string) {
	fs.StringVar(&e.Cluster, "cluster", keyspace.DefaultCluster, "cluster id: keys live under /meshrelay/v1/<cluster>/")
	fs.StringSliceVar(&e.Endpoints, "etcd-endpoints", nil, endpointsHelp)
	fs.StringVar(&e.EndpointsFile, "etcd-endpoints-file", "", "file of etcd endpoints (comma-separated), read again when it changes; instead of --etcd-endpoints")
	fs.StringVar(&e.CAFile, "etcd-ca", "", "etcd TLS: CA file (read again for every new connection)")
	fs.StringVar(&e.CertFile, "etcd-cert", "", "etcd TLS: client certificate file (with client-cert auth its CN is the etcd user)")
	fs.StringVar(&e.KeyFile, "etcd-key", "", "etcd TLS: client key file")
	fs.StringVar(&e.ServerName, "etcd-server-name", "", "etcd TLS: name to verify in etcd's certificate (default: each endpoint's host)")
	fs.StringVar(&e.Username, "etcd-username", "", "etcd user (password auth); needs --etcd-password-file")
	fs.StringVar(&e.PasswordFile, "etcd-password-file", "", "file holding the password of --etcd-username")
}

// TLS reports whether the etcd TLS flags ask for TLS.
func (e *Etcd) TLS() bool { return e.CAFile != "" || e.CertFile != "" }

// Validate checks the cluster id (one key segment) and that the flags fit
// together: TLS flags with plaintext endpoints, a certificate without its
// key, a user without a password file are refused.
func (e *Etcd) Validate() error {
	if e.Cluster == "" || strings.Contains(e.Cluster, "/") {
		return Invalid("cluster", e.Cluster, "want a non-empty id without '/'")
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
	if e.TLS() {
		if err := etcddial.CheckSecure(e.Endpoints); err != nil {
			return Invalid("etcd-endpoints", strings.Join(e.Endpoints, ","), "TLS is configured (--etcd-ca/--etcd-cert): want https:// endpoints, plaintext is refused")
		}
	}
	if (e.CertFile == "") != (e.KeyFile == "") {
		return Invalid("etcd-key", e.KeyFile, "--etcd-cert and --etcd-key go together")
	}
	if (e.Username == "") != (e.PasswordFile == "") {
		return Invalid("etcd-password-file", e.PasswordFile, "--etcd-username and --etcd-password-file go together")
	}
	if e.EndpointsFile != "" && len(e.Endpoints) > 0 {
		return Invalid("etcd-endpoints-file", e.EndpointsFile, "give --etcd-endpoints or --etcd-endpoints-file, not both")
	}
	return nil
}

// FileEndpoints reads --etcd-endpoints-file (with TLS, every endpoint must
// be https://). A bad file is a *UsageError.
func (e *Etcd) FileEndpoints() ([]string, error) {
	eps, err := etcddial.ReadEndpointsFile(e.EndpointsFile)
	if err == nil && e.TLS() {
		err = etcddial.CheckSecure(eps)
	}
	if err != nil {
		return nil, Invalid("etcd-endpoints-file", e.EndpointsFile, oneLine(err))
	}
	return eps, nil
}

// Dial opens an etcd client for endpoints (e.Endpoints, the embedded
// etcd's, or those of the endpoints file) with e's TLS files and user.
func (e *Etcd) Dial(endpoints []string, log *slog.Logger) (*clientv3.Client, error) {
	opts := etcddial.Options{
		Endpoints: endpoints,
		CAFile:    e.CAFile, CertFile: e.CertFile, KeyFile: e.KeyFile,
		ServerName: e.ServerName,
		Username:   e.Username,
		Logger:     log,
	}
	if e.PasswordFile != "" {
		pw, err := ReadSecretFile(e.PasswordFile)
		if err != nil {
			return nil, Invalid("etcd-password-file", e.PasswordFile, err.Error())
		}
		opts.Password = pw
	}
	return etcddial.Dial(opts)
}

// FollowEndpointsFile gives c the endpoints of --etcd-endpoints-file
// whenever the file changes (checked every interval), until ctx ends; a
// no-op without the flag. current is what c was dialed with.
func (e *Etcd) FollowEndpointsFile(ctx context.Context, c etcddial.EndpointSetter, current []string, interval time.Duration, log *slog.Logger) {
	if e.EndpointsFile == "" {
		return
	}
	etcddial.FollowEndpointsFile(ctx, c, e.EndpointsFile, current, e.TLS(), interval, log)
}

// ReadSecretFile reads a password or token file; trailing white space (a
// final newline) is not part of the secret. An empty secret is an error.
func ReadSecretFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	s := strings.TrimRight(string(b), " \t\r\n")
	if s == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return s, nil
}

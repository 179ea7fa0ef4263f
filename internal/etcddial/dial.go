package etcddial

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/meshrelay/meshrelay/internal/tlsfiles"
)

// Options says how to reach etcd.
type Options struct {
	Endpoints []string
	// CAFile, CertFile, KeyFile enable TLS when CAFile or CertFile is set.
	// They are read again for every new connection (internal/tlsfiles):
	// certificates replaced on disk are used without a restart. With TLS,
	// every endpoint must be https://: a plaintext endpoint is refused,
	// never dialed. Without files, an https:// endpoint is verified against
	// the system's roots.
	CAFile, CertFile, KeyFile string
	// ServerName is the name verified in etcd's certificate; empty means
	// each endpoint's host. The node agent dials members by pod IP and
	// verifies their certificate's DNS name.
	ServerName string
	// Username and Password authenticate as an etcd user (password auth).
	// Without them, and with a client certificate, etcd's user is the
	// certificate's common name.
	Username, Password string
	// DialTimeout bounds the first connection (default 5 s).
	DialTimeout time.Duration
	// MaxCallRecvMsgSize raises the client's receive limit (default 64 MiB)
	// for large ranges.
	MaxCallRecvMsgSize int
	Logger             *slog.Logger
}

// TLS reports whether the options ask for TLS (a CA or client certificate).
func (o Options) TLS() bool { return o.CAFile != "" || o.CertFile != "" }

// CheckSecure refuses plaintext endpoints (http://, or no scheme), which a
// client configured for TLS would otherwise dial without it.
func CheckSecure(endpoints []string) error {
	for _, ep := range endpoints {
		if !strings.HasPrefix(ep, "https://") && !strings.HasPrefix(ep, "unixs://") {
			return fmt.Errorf("endpoint %q is not https:// while TLS is configured: refusing plaintext", ep)
		}
	}
	return nil
}

// Flow-control windows of every etcd client (WindowOptions).
const (
	streamWindow = 1 << 20
	connWindow   = 4 << 20
)

// WindowOptions are the gRPC dial options that give a client fixed
// flow-control windows. With gRPC's default (dynamic windows), the client
// answers nearly every data frame it receives - every watch event - with
// a bandwidth-delay probe: a ping and a window update, one more write and
// read per event on both sides, which at one watch event per node per
// change is most of a node agent's and much of etcd's network CPU. Fixed
// windows of a MiB per stream send a window update per MiB received.
func WindowOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithInitialWindowSize(streamWindow), grpc.WithInitialConnWindowSize(connWindow)}
}

// Dial returns a client. It does not wait for etcd to answer: clientv3
// reconnects by itself, and callers retry their requests with backoff.
func Dial(opts Options) (*clientv3.Client, error) {
	if len(opts.Endpoints) == 0 {
		return nil, errors.New("dial etcd: no endpoints")
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.MaxCallRecvMsgSize == 0 {
		opts.MaxCallRecvMsgSize = 64 << 20
	}
	// gRPC's default reconnect backoff grows to 2 minutes; an etcd that
	// comes back must be used within a second.
	dialOpts := append([]grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
		MinConnectTimeout: 5 * time.Second,
	})}, WindowOptions()...)
	var tlsCfg *tls.Config
	switch {
	case opts.TLS():
		if err := CheckSecure(opts.Endpoints); err != nil {
			return nil, fmt.Errorf("dial etcd: %w", err)
		}
		files, err := tlsfiles.New(tlsfiles.Options{CAFile: opts.CAFile, CertFile: opts.CertFile, KeyFile: opts.KeyFile,
			ServerName: opts.ServerName, Logger: opts.Logger})
		if err != nil {
			return nil, fmt.Errorf("etcd tls: %w", err)
		}
		// clientv3 needs a TLS config to treat the endpoints as secure;
		// the connections use the credentials that re-read the files
		// (clientv3 applies Config.DialOptions after its own).
		tlsCfg = files.Config("")
		dialOpts = append(dialOpts, grpc.WithTransportCredentials(files.Credentials()))
	case slices.ContainsFunc(opts.Endpoints, func(e string) bool { return strings.HasPrefix(e, "https://") }):
		// https:// without files: verified against the system's roots,
		// never plaintext.
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:          opts.Endpoints,
		DialTimeout:        opts.DialTimeout,
		TLS:                tlsCfg,
		Username:           opts.Username,
		Password:           opts.Password,
		MaxCallRecvMsgSize: opts.MaxCallRecvMsgSize,
		Logger:             zap.NewNop(), // retries while etcd is down are expected; callers log errors
		DialOptions:        dialOpts,
	})
	if err != nil {
		return nil, fmt.Errorf("dial etcd %v: %w", opts.Endpoints, err)
	}
	if opts.Logger != nil {
		opts.Logger.Info("etcd client", "endpoints", opts.Endpoints, "tls", tlsCfg != nil, "user", opts.Username)
	}
	return c, nil
}

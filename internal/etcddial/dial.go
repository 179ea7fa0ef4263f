package etcddial

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// Options says how to reach etcd.
type Options struct {
	Endpoints []string
	// CAFile, CertFile, KeyFile enable TLS when CAFile or CertFile is set;
	// an https:// endpoint enables it too (verified against the system's
	// roots). The peer is always verified.
	CAFile, CertFile, KeyFile string
	// DialTimeout bounds the first connection (default 5 s).
	DialTimeout time.Duration
	// MaxCallRecvMsgSize raises the client's receive limit (default 64 MiB)
	// for large ranges.
	MaxCallRecvMsgSize int
	Logger             *slog.Logger
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
	var tlsCfg *tls.Config
	switch {
	case opts.CAFile != "" || opts.CertFile != "":
		info := transport.TLSInfo{TrustedCAFile: opts.CAFile, CertFile: opts.CertFile, KeyFile: opts.KeyFile}
		var err error
		if tlsCfg, err = info.ClientConfig(); err != nil {
			return nil, fmt.Errorf("etcd tls: %w", err)
		}
	case slices.ContainsFunc(opts.Endpoints, func(e string) bool { return strings.HasPrefix(e, "https://") }):
		// https:// without files: verified against the system's roots,
		// never plaintext.
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	c, err := clientv3.New(clientv3.Config{
		Endpoints:          opts.Endpoints,
		DialTimeout:        opts.DialTimeout,
		TLS:                tlsCfg,
		MaxCallRecvMsgSize: opts.MaxCallRecvMsgSize,
		Logger:             zap.NewNop(), // retries while etcd is down are expected; callers log errors
		// gRPC's default reconnect backoff grows to 2 minutes; an etcd
		// that comes back must be used within a second.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 5 * time.Second,
		})},
	})
	if err != nil {
		return nil, fmt.Errorf("dial etcd %v: %w", opts.Endpoints, err)
	}
	if opts.Logger != nil {
		opts.Logger.Info("etcd client", "endpoints", opts.Endpoints, "tls", tlsCfg != nil)
	}
	return c, nil
}

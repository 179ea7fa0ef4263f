package embedetcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"google.golang.org/grpc"

	"github.com/meshrelay/meshrelay/internal/etcddial"
)

// Options configure an embedded etcd. The zero value is a usable default.
type Options struct {
	// Dir is the data directory. Empty means a fresh temporary directory
	// (under /dev/shm when it exists), removed by Close. A directory given
	// here is never removed, so a Server can be closed and started again on
	// the same data.
	Dir string
	// ClientURL is the URL clients connect to, e.g. "http://127.0.0.1:2379"
	// ("https://" with ClientTLS). Empty, or port 0, means a free loopback
	// port. The host must be a loopback address (127.0.0.0/8, ::1 or
	// "localhost").
	ClientURL string
	// ClientTLS, when set, serves clients over TLS only: the endpoints are
	// https:// URLs.
	ClientTLS *TLS
	// PeerURL is the raft peer URL. Same rules and defaults as ClientURL; a
	// single member never dials it, but etcd insists on listening.
	PeerURL string
	// Name is the member name. Default "meshrelay".
	Name string
	// Tick is raft's heartbeat interval (etcd's --heartbeat-interval); the
	// election timeout is ten ticks. Default DefaultTick: a member elects
	// itself and serves within milliseconds of Start, which tests starting
	// etcd again and again want, at about 13 ms of CPU per second of idle
	// ticking (BenchmarkIdleCost). A long-running etcd takes LongTick,
	// etcd's own default: 4 ms per second idle, a start up to a second longer.
	Tick time.Duration
	// QuotaBackendBytes is etcd's backend quota. 0 means etcd's default (2 GiB).
	QuotaBackendBytes int64
	// StartTimeout bounds how long Start waits for the member to become
	// ready. Default 30 s.
	StartTimeout time.Duration
	// Pprof serves Go's profiles under /debug/pprof/ on the client URL
	// (etcd's --enable-pprof), e.g. for a CPU profile of a scale test's
	// etcd.
	Pprof bool
	// EtcdLogLevel is the lowest level of etcd's own logging that reaches
	// Logger: "debug", "info", "warn" or "error". Default "error": etcd is
	// chatty at info.
	EtcdLogLevel string
	// Logger receives this package's messages and etcd's (with
	// component=etcd). Default: discarded.
	Logger *slog.Logger
}

// Tick values for Options.Tick.
const (
	DefaultTick = 10 * time.Millisecond
	LongTick    = 100 * time.Millisecond
)

// TLS is the client-facing TLS of an embedded etcd.
type TLS struct {
	// CertFile and KeyFile are the server's certificate and key.
	CertFile, KeyFile string
	// CAFile is the CA that signs client certificates.
	CAFile string
	// ClientCertAuth requires a client certificate signed by CAFile; with
	// auth enabled, its common name is the etcd user.
	ClientCertAuth bool
}

// Server is a running embedded etcd.
type Server struct {
	etcd      *embed.Etcd
	dir       string
	removeDir bool
	endpoints []string
	logger    *slog.Logger
	closing   *atomic.Bool // silences etcd's logging of its own shutdown
	streams   *streamCanceller
}

// Start starts etcd and waits until it serves clients, ctx is done, or
// Options.StartTimeout passes.
func Start(ctx context.Context, opts Options) (*Server, error) {
	logger := opts.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	var level zapcore.Level
	if err := level.Set(orDefault(opts.EtcdLogLevel, "error")); err != nil {
		return nil, fmt.Errorf("etcd log level %q: %w", opts.EtcdLogLevel, err)
	}

	dir, removeDir := opts.Dir, false
	var err error
	if dir == "" {
		dir, err = os.MkdirTemp(tempRoot(), "meshrelay-etcd-")
		if err != nil {
			return nil, fmt.Errorf("create etcd data dir: %w", err)
		}
		removeDir = true
	}

	var (
		e                  *embed.Etcd
		clientURL, peerURL *url.URL
		closing            = new(atomic.Bool)
		streams            = newStreamCanceller()
	)
	// A free port picked here can be taken by another process before etcd
	// binds it: pick again (only ports this function picked).
	for attempt := 1; ; attempt++ {
		if clientURL, err = loopbackURL("client", opts.ClientURL, opts.ClientTLS != nil); err != nil {
			break
		}
		if peerURL, err = loopbackURL("peer", opts.PeerURL, false); err != nil {
			break
		}
		e, err = embed.StartEtcd(etcdConfig(opts, dir, clientURL, peerURL, level, logger, closing, streams))
		if err == nil || attempt == 5 || !addrInUse(err) || !(picksPort(opts.ClientURL) || picksPort(opts.PeerURL)) {
			break
		}
		logger.Debug("etcd port taken meanwhile; picking another", "err", err)
	}
	if err != nil {
		if removeDir {
			os.RemoveAll(dir)
		}
		return nil, fmt.Errorf("start etcd (client %s, dir %s): %w", clientURL, dir, err)
	}
	s := &Server{etcd: e, dir: dir, removeDir: removeDir, logger: logger, closing: closing, streams: streams}
	for _, l := range e.Clients {
		s.endpoints = append(s.endpoints, clientURL.Scheme+"://"+l.Addr().String())
	}
	if err := s.waitReady(ctx, e, opts.StartTimeout); err != nil {
		return nil, err
	}
	return s, nil
}

// etcdConfig is the embedded etcd's configuration.
func etcdConfig(opts Options, dir string, clientURL, peerURL *url.URL, level zapcore.Level, logger *slog.Logger, closing *atomic.Bool, streams *streamCanceller) *embed.Config {
	cfg := embed.NewConfig()
	cfg.Name = orDefault(opts.Name, "meshrelay")
	cfg.Dir = dir
	cfg.ListenClientUrls = []url.URL{*clientURL}
	cfg.AdvertiseClientUrls = []url.URL{*clientURL}
	cfg.ListenPeerUrls = []url.URL{*peerURL}
	cfg.AdvertisePeerUrls = []url.URL{*peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.QuotaBackendBytes = opts.QuotaBackendBytes
	if t := opts.ClientTLS; t != nil {
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: t.CertFile, KeyFile: t.KeyFile, TrustedCAFile: t.CAFile, ClientCertAuth: t.ClientCertAuth}
	}
	cfg.UnsafeNoFsync = true
	cfg.EnablePprof = opts.Pprof
	// One member elects itself: short ticks make Start take milliseconds
	// instead of about a second (Options.Tick).
	tick := opts.Tick
	if tick <= 0 {
		tick = DefaultTick
	}
	cfg.TickMs = uint(max(tick.Milliseconds(), 1))
	cfg.ElectionMs = 10 * cfg.TickMs
	cfg.GRPCAdditionalServerOptions = []grpc.ServerOption{grpc.ChainStreamInterceptor(streams.intercept)}
	cfg.LogLevel = level.String()
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(&slogCore{logger: logger, level: level, closing: closing}))
	// A cache that churns must not keep its whole history: keep five
	// minutes of it. Watchers that fall further behind re-list (docs/contract.md).
	cfg.AutoCompactionMode = embed.CompactorModePeriodic
	cfg.AutoCompactionRetention = "5m"
	return cfg
}

// addrInUse reports whether err is a listener's "address already in use".
func addrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

// picksPort reports whether a URL option leaves the port to Start.
func picksPort(raw string) bool {
	if raw == "" {
		return true
	}
	u, err := url.Parse(raw)
	return err == nil && (u.Port() == "" || u.Port() == "0")
}

// waitReady waits until e serves clients; on failure it closes s.
func (s *Server) waitReady(ctx context.Context, e *embed.Etcd, timeout time.Duration) error {
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var err error
	select {
	case <-e.Server.ReadyNotify():
		s.logger.Info("embedded etcd ready", "endpoints", s.endpoints, "dir", s.dir)
		return nil
	case err = <-e.Err():
		err = fmt.Errorf("start etcd: %w", err)
	case <-timer.C:
		err = fmt.Errorf("start etcd: not ready after %s", timeout)
	case <-ctx.Done():
		err = fmt.Errorf("start etcd: %w", ctx.Err())
	}
	s.Close()
	return err
}

// Endpoints are the client URLs, e.g. ["http://127.0.0.1:41234"]. The port
// is the real one even when Options.ClientURL asked for a free port, so a
// caller can restart etcd on the same port by passing it back as ClientURL.
func (s *Server) Endpoints() []string { return s.endpoints }

// Dir is the data directory.
func (s *Server) Dir() string { return s.dir }

// Close stops etcd and, when Start created the data directory, removes it.
// It is safe to call more than once.
func (s *Server) Close() error {
	if s.etcd == nil {
		return nil
	}
	s.closing.Store(true)
	s.streams.cancel()
	s.etcd.Close()
	s.etcd = nil
	s.logger.Info("embedded etcd stopped", "endpoints", s.endpoints)
	if s.removeDir {
		if err := os.RemoveAll(s.dir); err != nil {
			return fmt.Errorf("remove etcd data dir: %w", err)
		}
	}
	return nil
}

// NewClient returns a client of endpoints with a 5 s dial timeout.
// Dialling does not block: an unreachable etcd shows up as errors on
// requests. The client reconnects within a second of etcd coming back
// (gRPC's default reconnect backoff grows to two minutes), which is what a
// loopback etcd that restarts wants.
func NewClient(endpoints []string) (*clientv3.Client, error) {
	return etcddial.Dial(etcddial.Options{Endpoints: endpoints})
}

// loopbackURL parses raw (empty means "http://127.0.0.1:0", or https
// with secure), refuses a non-loopback host and replaces port 0 by a free
// port.
func loopbackURL(what, raw string, secure bool) (*url.URL, error) {
	scheme := "http"
	if secure {
		scheme = "https"
	}
	if raw == "" {
		raw = scheme + "://127.0.0.1:0"
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s URL %q: %w", what, raw, err)
	}
	if u.Scheme != scheme {
		return nil, fmt.Errorf("%s URL %q: scheme must be %s", what, raw, scheme)
	}
	host, port := u.Hostname(), u.Port()
	if host == "localhost" {
		host = "127.0.0.1"
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%s URL %q: host must be a loopback address", what, raw)
	}
	if port == "" || port == "0" {
		port, err = freePort(host)
		if err != nil {
			return nil, fmt.Errorf("%s URL %q: %w", what, raw, err)
		}
	}
	u.Host = net.JoinHostPort(host, port)
	return u, nil
}

// freePort asks the kernel for a free TCP port on host. Another process may
// take it before etcd binds it; Start then fails and the caller may retry.
func freePort(host string) (string, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	_, port, err := net.SplitHostPort(l.Addr().String())
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	return port, nil
}

// tempRoot is /dev/shm when it is a writable directory, else os.TempDir().
func tempRoot() string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		if f, err := os.CreateTemp("/dev/shm", ".meshrelay-probe-"); err == nil {
			f.Close()
			os.Remove(f.Name())
			return "/dev/shm"
		}
	}
	return os.TempDir()
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

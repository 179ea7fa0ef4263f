package opsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options configures a Server.
type Options struct {
	// Listen is the host:port to listen on, e.g. "127.0.0.1:9090".
	Listen string
	// Gatherer serves /metrics. Nil means the default Prometheus registry.
	Gatherer prometheus.Gatherer
	// Ready reports whether /readyz answers 200; nil means always ready.
	// It returns a short reason when not ready.
	Ready func() (bool, string)
	// Healthy reports whether /healthz answers 200; nil means always
	// healthy. It returns a short reason when not.
	Healthy func() (bool, string)
	// Handlers are extra handlers by pattern (http.ServeMux syntax, e.g.
	// "POST /release-deletions").
	Handlers map[string]http.Handler
	// Pprof serves /debug/pprof/ when set. It is off by default: profiles
	// and the command line are not for every client of the metrics port.
	Pprof  bool
	Logger *slog.Logger
}

// Server is a running ops HTTP server.
type Server struct {
	ln   net.Listener
	srv  *http.Server
	done chan error
}

// Start listens on opts.Listen and serves until Close.
func Start(opts Options) (*Server, error) {
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", opts.Listen, err)
	}
	g := opts.Gatherer
	if g == nil {
		g = prometheus.DefaultGatherer
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if opts.Healthy != nil {
			if ok, why := opts.Healthy(); !ok {
				http.Error(w, "unhealthy: "+why, http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	for pattern, h := range opts.Handlers {
		mux.Handle(pattern, h)
	}
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if opts.Ready != nil {
			if ok, why := opts.Ready(); !ok {
				http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
				return
			}
		}
		fmt.Fprintln(w, "ready")
	})
	if opts.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}

	s := &Server{ln: ln, srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, done: make(chan error, 1)}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	if opts.Logger != nil {
		opts.Logger.Info("ops server listening", "addr", ln.Addr().String(), "pprof", opts.Pprof)
	}
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server, waiting up to the context's deadline for requests.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if serveErr := <-s.done; err == nil {
		err = serveErr
	}
	return err
}

// NewRegistry returns a registry holding the Go runtime and process
// collectors (process metrics prefixed meshrelay_).
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{Namespace: "meshrelay"}))
	return reg
}

// StartOrNone starts a Server unless opts.Listen is empty; the returned
// stop function (never nil) shuts it down within 2 s.
func StartOrNone(opts Options) (stop func(), err error) {
	if opts.Listen == "" {
		return func() {}, nil
	}
	s, err := Start(opts)
	if err != nil {
		return nil, err
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.Close(ctx)
	}, nil
}

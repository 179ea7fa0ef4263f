package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/opsserver"
	"github.com/meshrelay/meshrelay/relay"
	"github.com/meshrelay/meshrelay/relay/etcdsink"
	"github.com/meshrelay/meshrelay/relay/inspect"
)

// runRelay reads the configuration, starts etcd (embedded unless
// --etcd-endpoints), the ops server and the relay, and runs until ctx ends.
func runRelay(ctx context.Context, r *cliconfig.Reader, stdout, stderr io.Writer) error {
	log := r.Logger(stderr)
	mode := r.OneOf("mode", "sotw", "workload")
	cluster := r.String("cluster")
	shards := r.Int("shards")
	if shards < 1 || shards > 4096 {
		r.Fail("shards", shards, "want 1..4096")
	}
	opts := relay.Options{
		Istiod:         r.String("istiod"),
		Cluster:        cluster,
		Shards:         shards,
		RelayID:        r.String("relay-id"),
		SyncTimeout:    r.Duration("sync-timeout"),
		NodeID:         r.String("node-id"),
		NodeMetadata:   r.StringMap("node-metadata"),
		MaxRecvMsgSize: r.Int("max-recv-msg-size"),
		Sink: etcdsink.Options{
			Window:                r.Duration("coalesce-window"),
			MaxDelay:              r.Duration("coalesce-max-delay"),
			OpsPerSecond:          r.Float("etcd-ops-per-second"),
			BootstrapOpsPerSecond: r.Float("etcd-bootstrap-ops-per-second"),
		},
		Logger: log,
	}
	if _, _, err := net.SplitHostPort(opts.Istiod); err != nil {
		r.Fail("istiod", opts.Istiod, "want host:port")
	}
	if cluster == "" || containsSlash(cluster) {
		r.Fail("cluster", cluster, "want a non-empty id without '/'")
	}
	if opts.Sink.Window <= 0 || opts.Sink.MaxDelay < opts.Sink.Window {
		r.Fail("coalesce-max-delay", opts.Sink.MaxDelay, "want coalesce-window > 0 and coalesce-max-delay >= coalesce-window")
	}
	if opts.Sink.OpsPerSecond <= 0 {
		r.Fail("etcd-ops-per-second", opts.Sink.OpsPerSecond, "want > 0")
	}
	if opts.Sink.BootstrapOpsPerSecond <= 0 {
		r.Fail("etcd-bootstrap-ops-per-second", opts.Sink.BootstrapOpsPerSecond, "want > 0")
	}
	creds, err := istiodCredentials(r, opts.Istiod)
	if err != nil {
		return err
	}
	opts.DialOptions = []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if err := r.Err(); err != nil {
		return err
	}
	if mode == "workload" {
		return cliconfig.Invalid("mode", mode, "the ambient workload API mode is not implemented yet; use sotw")
	}
	if opts.RelayID == "" {
		opts.RelayID = defaultRelayID()
	}

	endpoints := r.Strings("etcd-endpoints")
	if len(endpoints) == 0 {
		srv, err := embedetcd.Start(ctx, embedetcd.Options{
			ClientURL: "http://" + r.String("etcd-listen"),
			Dir:       r.String("etcd-data-dir"),
			Logger:    log.With("component", "embedded-etcd"),
		})
		if err != nil {
			return fmt.Errorf("embedded etcd: %w", err)
		}
		defer srv.Close()
		endpoints = srv.Endpoints()
		fmt.Fprintf(stdout, "embedded etcd (in-memory) listening on %s\n  inspect: ETCDCTL_API=3 etcdctl --endpoints=%s get --prefix %s --keys-only\n  decode:  etcdctl --endpoints=%s get %s --print-value-only | relay decode\n",
			endpoints[0], endpoints[0], keyspace.New(cluster).Prefix(), endpoints[0], keyspace.New(cluster).Spec(keyspace.Service{Namespace: "NAMESPACE", Name: "NAME"}))
	}
	client, err := r.EtcdDial(endpoints, log)
	if err != nil {
		return err
	}
	defer client.Close()

	reg := opsserver.NewRegistry()
	opts.Registerer = reg
	rl, err := relay.New(client, opts)
	if err != nil {
		return err
	}
	stopOps, err := opsserver.StartOrNone(opsserver.Options{Listen: r.String("metrics-listen"), Gatherer: reg, Ready: rl.Ready, Logger: log})
	if err != nil {
		return cliconfig.Invalid("metrics-listen", r.String("metrics-listen"), err.Error())
	}
	defer stopOps()
	log.Info("relay starting", "istiod", opts.Istiod, "cluster", cluster, "shards", shards, "relay_id", opts.RelayID, "etcd", endpoints)
	err = rl.Run(ctx)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		log.Info("relay stopped")
		return nil
	}
	return err
}

func containsSlash(s string) bool {
	for _, c := range s {
		if c == '/' {
			return true
		}
	}
	return false
}

func defaultRelayID() string {
	if p := os.Getenv("POD_NAME"); p != "" {
		return p
	}
	if h, err := os.Hostname(); err == nil {
		return h
	}
	return "relay"
}

// istiodCredentials returns TLS credentials when --istiod-ca or
// --istiod-cert is set (Istiod's 15012 port), insecure ones otherwise.
func istiodCredentials(r *cliconfig.Reader, addr string) (credentials.TransportCredentials, error) {
	ca, cert, key := r.String("istiod-ca"), r.String("istiod-cert"), r.String("istiod-key")
	if ca == "" && cert == "" {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: r.String("istiod-server-name")}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(addr)
	}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, cliconfig.Invalid("istiod-ca", ca, err.Error())
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, cliconfig.Invalid("istiod-ca", ca, "no PEM certificate in file")
		}
		cfg.RootCAs = pool
	}
	if cert != "" || key != "" {
		kp, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, cliconfig.Invalid("istiod-cert", cert, err.Error())
		}
		cfg.Certificates = []tls.Certificate{kp}
	}
	return credentials.NewTLS(cfg), nil
}

func decode(b []byte, key string, stdout io.Writer) error {
	m, err := inspect.Decode(b, key)
	if err != nil {
		return err
	}
	out, err := inspect.JSON(m)
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

func runInspect(ctx context.Context, r *cliconfig.Reader, svc *keyspace.Service, stdout io.Writer) error {
	if err := r.Err(); err != nil {
		return err
	}
	client, err := r.EtcdDial(r.Strings("etcd-endpoints"), nil)
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	space := keyspace.New(r.String("cluster"))
	var v any
	if svc != nil {
		s, err := inspect.ReadService(ctx, client, space, *svc)
		if err != nil {
			return err
		}
		v = s
	} else {
		all, err := inspect.ReadAll(ctx, client, space)
		if err != nil {
			return err
		}
		v = all
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
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

// runRelay starts etcd (embedded unless --etcd-endpoints), the ops server
// and the relay, and runs until ctx ends.
func runRelay(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	log := cfg.Log.Logger(stderr)
	creds, err := cfg.istiodCredentials()
	if err != nil {
		return err
	}
	opts := relay.Options{
		Istiod:              cfg.Istiod,
		Mode:                relay.Mode(cfg.Mode),
		Cluster:             cfg.Etcd.Cluster,
		Shards:              cfg.Shards,
		RelayID:             cfg.relayID(),
		SyncTimeout:         cfg.SyncTimeout,
		NodeID:              cfg.NodeID,
		NodeMetadata:        cfg.nodeMetadata(),
		MaxRecvMsgSize:      cfg.MaxRecvMsgSize,
		StallTimeout:        cfg.StallTimeout,
		UpstreamLostTimeout: cfg.UpstreamLostTimeout,
		DialOptions:         []grpc.DialOption{grpc.WithTransportCredentials(creds)},
		Sink: etcdsink.Options{
			Window:                cfg.CoalesceWindow,
			MaxDelay:              cfg.CoalesceMaxDelay,
			OpsPerSecond:          cfg.EtcdOpsPerSecond,
			BootstrapOpsPerSecond: cfg.EtcdBootstrapOpsPerSecond,
			MaxDeleteFraction:     cfg.MaxDeleteFraction,
			DeleteGuardMin:        cfg.DeleteGuardMin,
			DeleteHoldTime:        cfg.DeleteHoldTime,
		},
		Logger: log,
	}

	endpoints := cfg.Etcd.Endpoints
	if len(endpoints) == 0 {
		srv, err := embedetcd.Start(ctx, embedetcd.Options{
			ClientURL: "http://" + cfg.EtcdListen,
			Dir:       cfg.EtcdDataDir,
			Logger:    log.With("component", "embedded-etcd"),
		})
		if err != nil {
			return fmt.Errorf("embedded etcd: %w", err)
		}
		defer srv.Close()
		endpoints = srv.Endpoints()
		space := keyspace.New(cfg.Etcd.Cluster)
		fmt.Fprintf(stdout, "embedded etcd (in-memory) listening on %s\n  inspect: ETCDCTL_API=3 etcdctl --endpoints=%s get --prefix %s --keys-only\n  decode:  etcdctl --endpoints=%s get %s --print-value-only | relay decode\n",
			endpoints[0], endpoints[0], space.Prefix(), endpoints[0], space.Spec(keyspace.Service{Namespace: "NAMESPACE", Name: "NAME"}))
	}
	client, err := cfg.Etcd.Dial(endpoints, log)
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
	ops := opsserver.Options{Gatherer: reg, Ready: rl.Ready, Healthy: rl.Healthy,
		Handlers: map[string]http.Handler{releaseDeletionsPattern: releaseDeletions(rl, log)}}
	return cliconfig.Serve(ctx, log, cfg.MetricsListen, ops, rl.Run,
		"relay starting", "relay stopped",
		"istiod", opts.Istiod, "mode", cfg.Mode, "cluster", opts.Cluster, "shards", opts.Shards, "relay_id", opts.RelayID, "etcd", endpoints)
}

// releaseDeletionsPattern is the operator's release of held deletions
// (docs/contract.md, "Held deletions"):
//
//	curl -X POST http://127.0.0.1:9464/release-deletions
const releaseDeletionsPattern = "POST /release-deletions"

// releaseDeletions serves releaseDeletionsPattern.
func releaseDeletions(rl *relay.Relay, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := rl.ReleaseDeletions()
		log.Warn("operator released held deletions", "services", n, "remote", r.RemoteAddr)
		fmt.Fprintf(w, "released %d held service removals\n", n)
	})
}

// istiodCredentials returns TLS credentials when --istiod-ca is set
// (Istiod's 15012 port), insecure ones otherwise; Validate refused every
// other TLS flag without it.
func (c *config) istiodCredentials() (credentials.TransportCredentials, error) {
	ca, cert, key := c.IstiodCA, c.IstiodCert, c.IstiodKey
	if ca == "" {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.IstiodServerName}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(c.Istiod)
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		return nil, cliconfig.Invalid("istiod-ca", ca, err.Error())
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, cliconfig.Invalid("istiod-ca", ca, "no PEM certificate in file")
	}
	cfg.RootCAs = pool
	if cert != "" {
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

func runInspect(ctx context.Context, cfg *inspectConfig, svc *keyspace.Service, stdout io.Writer) error {
	client, err := cfg.Etcd.Dial(cfg.Etcd.Endpoints, nil)
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	space := keyspace.New(cfg.Etcd.Cluster)
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

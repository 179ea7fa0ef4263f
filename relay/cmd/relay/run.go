package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/opsserver"
	"github.com/meshrelay/meshrelay/internal/tlsfiles"
	"github.com/meshrelay/meshrelay/relay"
	"github.com/meshrelay/meshrelay/relay/etcdsink"
	"github.com/meshrelay/meshrelay/relay/inspect"
	"github.com/meshrelay/meshrelay/relay/shard"
)

// endpointsFileInterval is how often --etcd-endpoints-file is read again.
const endpointsFileInterval = 5 * time.Second

// runRelay starts etcd (embedded unless --etcd-endpoints), the ops server
// and the relay, and runs until ctx ends.
func runRelay(ctx context.Context, cfg *config, stdout, stderr io.Writer) error {
	log := cfg.Log.Logger(stderr)
	dialOpts, err := cfg.istiodDialOptions()
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
		DialOptions:         dialOpts,
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
	if cfg.Etcd.EndpointsFile != "" {
		if endpoints, err = cfg.Etcd.FileEndpoints(); err != nil {
			return err
		}
	} else if len(endpoints) == 0 {
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
	go cfg.Etcd.FollowEndpointsFile(ctx, client, endpoints, endpointsFileInterval, log)

	reg := opsserver.NewRegistry()
	opts.Registerer = reg
	opts.HA = &relay.HA{Client: client, LeaseTTL: cfg.LeaseTTL, Pod: pod()}
	rl, err := relay.New(client, opts)
	if err != nil {
		return err
	}
	ops := opsserver.Options{Pprof: cfg.Pprof, Gatherer: reg, Ready: rl.Ready, Healthy: rl.Healthy,
		Handlers: map[string]http.Handler{releaseDeletionsPattern: releaseDeletions(rl, log)}}
	return cliconfig.Serve(ctx, log, cfg.MetricsListen, ops, rl.Run,
		"relay starting", "relay stopped",
		"istiod", opts.Istiod, "mode", cfg.Mode, "cluster", opts.Cluster, "shards", opts.Shards, "relay_id", opts.RelayID, "lease_ttl", cfg.LeaseTTL, "etcd", endpoints)
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
// other TLS flag without it. The files are read again for every new
// connection (internal/tlsfiles).
func (c *config) istiodCredentials() (credentials.TransportCredentials, error) {
	if c.IstiodCA == "" {
		return insecure.NewCredentials(), nil
	}
	serverName := c.IstiodServerName
	if serverName == "" {
		serverName, _, _ = net.SplitHostPort(c.Istiod)
	}
	files, err := tlsfiles.New(tlsfiles.Options{CAFile: c.IstiodCA, CertFile: c.IstiodCert, KeyFile: c.IstiodKey, ServerName: serverName})
	if err != nil {
		return nil, cliconfig.Invalid("istiod-ca", c.IstiodCA, oneLine(err))
	}
	return files.Credentials(), nil
}

// istiodDialOptions are the Istiod connection's credentials: TLS, and the
// token of --istiod-token-file per RPC.
func (c *config) istiodDialOptions() ([]grpc.DialOption, error) {
	creds, err := c.istiodCredentials()
	if err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if c.IstiodTokenFile != "" {
		tok, err := newTokenFile(c.IstiodTokenFile)
		if err != nil {
			return nil, cliconfig.Invalid("istiod-token-file", c.IstiodTokenFile, err.Error())
		}
		opts = append(opts, grpc.WithPerRPCCredentials(tok))
	}
	return opts, nil
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

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
	return printFromEtcd(ctx, cfg.Etcd, stdout, func(ctx context.Context, client *clientv3.Client, space keyspace.Space) (any, error) {
		if svc != nil {
			return inspect.ReadService(ctx, client, space, *svc)
		}
		return inspect.ReadAll(ctx, client, space)
	})
}

func runStatus(ctx context.Context, cfg *statusConfig, stdout io.Writer) error {
	return printFromEtcd(ctx, cfg.Etcd, stdout, func(ctx context.Context, client *clientv3.Client, space keyspace.Space) (any, error) {
		return shard.ReadStatus(ctx, client, space, cfg.Shards)
	})
}

// printFromEtcd dials etcd, reads with read (30 s at most) and prints what
// it returns as indented JSON.
func printFromEtcd(ctx context.Context, etcd cliconfig.Etcd, stdout io.Writer, read func(context.Context, *clientv3.Client, keyspace.Space) (any, error)) error {
	client, err := etcd.Dial(etcd.Endpoints, nil)
	if err != nil {
		return err
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := read(ctx, client, keyspace.New(etcd.Cluster))
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

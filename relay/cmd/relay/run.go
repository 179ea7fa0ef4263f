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

	clientv3 "go.etcd.io/etcd/client/v3"
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
	"github.com/meshrelay/meshrelay/relay/shard"
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
		Istiod:         cfg.Istiod,
		Cluster:        cfg.Etcd.Cluster,
		Shards:         cfg.Shards,
		RelayID:        cfg.relayID(),
		SyncTimeout:    cfg.SyncTimeout,
		NodeID:         cfg.NodeID,
		NodeMetadata:   cfg.nodeMetadata(),
		MaxRecvMsgSize: cfg.MaxRecvMsgSize,
		DialOptions:    []grpc.DialOption{grpc.WithTransportCredentials(creds)},
		Sink: etcdsink.Options{
			Window:                cfg.CoalesceWindow,
			MaxDelay:              cfg.CoalesceMaxDelay,
			OpsPerSecond:          cfg.EtcdOpsPerSecond,
			BootstrapOpsPerSecond: cfg.EtcdBootstrapOpsPerSecond,
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
	opts.HA = &relay.HA{Client: client, LeaseTTL: cfg.LeaseTTL, Pod: pod()}
	rl, err := relay.New(client, opts)
	if err != nil {
		return err
	}
	stopOps, err := opsserver.StartOrNone(opsserver.Options{Listen: cfg.MetricsListen, Gatherer: reg, Ready: rl.Ready, Logger: log})
	if err != nil {
		return cliconfig.Invalid("metrics-listen", cfg.MetricsListen, err.Error())
	}
	defer stopOps()
	log.Info("relay starting", "istiod", opts.Istiod, "cluster", opts.Cluster, "shards", opts.Shards, "relay_id", opts.RelayID, "lease_ttl", cfg.LeaseTTL, "etcd", endpoints)
	err = rl.Run(ctx)
	if errors.Is(err, context.Canceled) && ctx.Err() != nil {
		log.Info("relay stopped")
		return nil
	}
	return err
}

// istiodCredentials returns TLS credentials when --istiod-ca or
// --istiod-cert is set (Istiod's 15012 port), insecure ones otherwise.
func (c *config) istiodCredentials() (credentials.TransportCredentials, error) {
	ca, cert, key := c.IstiodCA, c.IstiodCert, c.IstiodKey
	if ca == "" && cert == "" {
		return insecure.NewCredentials(), nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: c.IstiodServerName}
	if cfg.ServerName == "" {
		cfg.ServerName, _, _ = net.SplitHostPort(c.Istiod)
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

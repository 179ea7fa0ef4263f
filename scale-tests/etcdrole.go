package main

import (
	"context"
	"log/slog"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
)

// etcdConfig configures the etcd role: an embedded etcd in its own
// process, so that its CPU and memory are measured apart from the relay's.
type etcdConfig struct {
	// ClientURL is the loopback URL to serve clients on: empty for a free
	// port (reported when ready), the previous etcd's after a wipe.
	ClientURL string `json:"clientURL"`
	// Dir is the data directory; the harness removes it.
	Dir string `json:"dir"`
}

func runEtcdRole(ctx context.Context, raw []byte, ctl *controlServer, log *slog.Logger, ready func(string)) error {
	cfg, err := decodeConfig[etcdConfig](raw)
	if err != nil {
		return err
	}
	srv, err := embedetcd.Start(ctx, embedetcd.Options{ClientURL: cfg.ClientURL, Dir: cfg.Dir, Logger: log})
	if err != nil {
		return err
	}
	defer srv.Close()
	handle(ctl, "ping", func(ctx context.Context, _ struct{}) (struct{}, error) { return struct{}{}, nil })
	ready(srv.Endpoints()[0])
	<-ctx.Done()
	return ctx.Err()
}

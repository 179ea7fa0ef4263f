package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// Roles a child process can play (--role). The harness binary re-executes
// itself once per component, so that /proc attributes CPU and memory to
// each component.
const (
	roleSim         = "sim"
	roleEtcd        = "etcd"
	roleRelay       = "relay"
	roleRelayNodes  = "relay-nodes"
	roleDirectNodes = "direct-nodes"
)

// roleFunc runs a role until ctx is done. It parses its JSON
// configuration, registers its control verbs on ctl, and calls ready once
// it serves, with its service address (if any).
type roleFunc func(ctx context.Context, raw []byte, ctl *controlServer, log *slog.Logger, ready func(addr string)) error

var roleFuncs = map[string]roleFunc{
	roleSim:         runSimRole,
	roleEtcd:        runEtcdRole,
	roleRelay:       runRelayRole,
	roleRelayNodes:  runRelayNodesRole,
	roleDirectNodes: runDirectNodesRole,
}

// runRole is the main of a child process. It returns the exit status.
func runRole(role, rawConfig string, stdin io.Reader, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("role", role)
	f, ok := roleFuncs[role]
	if !ok {
		fmt.Fprintf(stderr, "scale-tests: unknown --role %q\n", role)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The harness holds our stdin open for as long as it lives.
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		cancel()
	}()
	ctl, err := newControlServer()
	if err != nil {
		log.Error("control server", "err", err)
		return 1
	}
	raw := []byte(rawConfig)
	if path, ok := strings.CutPrefix(rawConfig, "@"); ok {
		if raw, err = os.ReadFile(path); err != nil {
			log.Error("role config", "err", err)
			return 1
		}
	}
	ready := func(addr string) {
		ctl.serve(ctx)
		b, _ := json.Marshal(readyInfo{Control: ctl.addr(), Addr: addr})
		fmt.Fprintf(stdout, "%s%s\n", readyPrefix, b)
	}
	err = f(ctx, raw, ctl, log, ready)
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("role failed", "err", err)
		fmt.Fprintf(stderr, "scale-tests %s: %v\n", role, err)
		return 1
	}
	return 0
}

// decodeConfig parses a role's configuration.
func decodeConfig[T any](raw []byte) (T, error) {
	var c T
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("role config: %w", err)
	}
	return c, nil
}

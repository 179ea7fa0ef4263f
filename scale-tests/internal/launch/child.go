package launch

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

	"github.com/meshrelay/meshrelay/scale-tests/internal/control"
)

// RoleFunc runs a role until ctx is done. It parses its JSON
// configuration, registers its control verbs on ctl, and calls ready once
// it serves, with its service address (if any).
type RoleFunc func(ctx context.Context, raw []byte, ctl *control.Server, log *slog.Logger, ready func(addr string)) error

// RunChild is the main of a child process playing role with f. It
// returns the exit status.
// rawConfig is the configuration as given by --role-config: JSON, or
// @path of a file holding it. The harness holds the child's stdin open
// for as long as it lives: EOF on it cancels f.
func RunChild(role string, f RoleFunc, rawConfig string, stdin io.Reader, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("role", role)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The harness holds our stdin open for as long as it lives.
	go func() {
		_, _ = io.Copy(io.Discard, stdin)
		cancel()
	}()
	ctl, err := control.NewServer()
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
		ctl.Serve(ctx)
		b, _ := json.Marshal(ReadyInfo{Control: ctl.Addr(), Addr: addr})
		fmt.Fprintf(stdout, "%s%s\n", ReadyPrefix, b)
	}
	err = f(ctx, raw, ctl, log, ready)
	if err != nil && !errors.Is(err, context.Canceled) {
		log.Error("role failed", "err", err)
		fmt.Fprintf(stderr, "scale-tests %s: %v\n", role, err)
		return 1
	}
	return 0
}

// DecodeConfig parses a role's configuration.
func DecodeConfig[T any](raw []byte) (T, error) {
	var c T
	if err := json.Unmarshal(raw, &c); err != nil {
		return c, fmt.Errorf("role config: %w", err)
	}
	return c, nil
}

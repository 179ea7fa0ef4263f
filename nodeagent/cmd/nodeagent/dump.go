package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/meshrelay/meshrelay/nodeagent/cmd/nodeagent/dumpview"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// runDump prints the pinned maps under --bpf-pin-path as JSON. It opens
// them read-only and never creates maps.
func runDump(ctx context.Context, cfg *pinConfig, stdout, stderr io.Writer) error {
	log := cfg.Log.Logger(stderr)
	pin := cfg.PinPath
	before, err := layouts(pin)
	if err != nil {
		return err
	}
	if len(before) == 0 {
		return fmt.Errorf("no maps pinned under %s (is an agent with --datapath=bpf running here?)", pin)
	}
	b, err := openBPF(datapath.BPFOptions{PinPath: pin, Logger: log, ReadOnly: true})
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("the maps pinned under %s (%s) are of another layout than this binary's: %w", pin, strings.Join(before, ", "), err)
		}
		return err
	}
	defer b.Close()
	st, err := b.Dump(ctx)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(dumpview.NewView(st).WithMaps(b.Stats().Maps))
}

// layouts lists the map directories (v<layout>) pinned under pin.
func layouts(pin string) ([]string, error) {
	entries, err := os.ReadDir(pin)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", pin, err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() && strings.HasPrefix(e.Name(), "v") {
			out = append(out, filepath.Join(pin, e.Name()))
		}
	}
	return out, nil
}

// runUninstall detaches the programs and removes every pin under --bpf-pin-path.
func runUninstall(cfg *pinConfig, stdout io.Writer) error {
	pin := cfg.PinPath
	if _, err := os.Stat(pin); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(stdout, "nothing pinned under %s\n", pin)
		return nil
	}
	if err := datapath.Uninstall(pin); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "detached the socket programs and removed every pin under %s\n", pin)
	return nil
}

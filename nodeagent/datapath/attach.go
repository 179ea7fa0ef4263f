package datapath

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
)

// errReadOnly is returned by the writes of a BPF opened read-only.
var errReadOnly = errors.New("maps opened read-only")

// attachment is what Attach installed on a BPF datapath. Its fields but mu
// are guarded by BPF.mu; mu serialises Attach calls.
type attachment struct {
	mu       sync.Mutex
	opts     ProgramsOptions
	readOnly bool
	progs    *Programs
}

func (a *attachment) close() error {
	if a.progs == nil {
		return nil
	}
	return a.progs.Close()
}

// Attach implements Datapath: it makes cidrs the service CIDRs the
// programs report misses in and, on the first call, loads the socket
// programs with this datapath's maps and attaches them as configured by
// BPFOptions.Programs (Install), then removes the maps of older layouts.
// Later calls only update the CIDRs and return the same Programs. Close
// closes them (they stay attached through their pinned links).
func (b *BPF) Attach(ctx context.Context, cidrs []netip.Prefix) (*Programs, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	b.attached.mu.Lock()
	defer b.attached.mu.Unlock()
	b.mu.Lock()
	closed, readOnly, progs, opts := b.closed, b.attached.readOnly, b.attached.progs, b.attached.opts
	b.mu.Unlock()
	switch {
	case closed:
		return nil, errClosed
	case readOnly:
		return nil, fmt.Errorf("attach programs: %w", errReadOnly)
	}
	if err := b.SetServiceCIDRs(cidrs); err != nil {
		return nil, err
	}
	if progs != nil {
		return progs, nil
	}
	if opts.Logger == nil {
		opts.Logger = b.log
	}
	progs, err := Install(b, opts)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if b.closed { // closed meanwhile
		b.mu.Unlock()
		progs.Close()
		return nil, errClosed
	}
	b.attached.progs = progs
	b.mu.Unlock()
	if err := b.RemoveStaleLayouts(); err != nil {
		b.log.Warn("removing maps of an older layout", "err", err)
	}
	return progs, nil
}

// Attach implements Datapath: the memory datapath has no programs; it
// returns nil Programs and no error.
func (m *Memory) Attach(ctx context.Context, cidrs []netip.Prefix) (*Programs, error) {
	return nil, ctx.Err()
}

// loadPinned opens this layout's pinned maps read-only, checking each
// against the layout's spec.
func (b *BPF) loadPinned(opts BPFOptions) error {
	for _, name := range pinnedMaps(b.spec) {
		path := filepath.Join(b.dir, name)
		m, err := ebpf.LoadPinnedMap(path, &ebpf.LoadPinOptions{ReadOnly: true})
		if err == nil {
			if err = b.spec.Maps[name].Compatible(m); err != nil {
				m.Close()
			}
		}
		if err != nil {
			b.closeMaps()
			return fmt.Errorf("open pinned map %s: %w", path, err)
		}
		b.maps[name] = m
	}
	return b.openTables(opts, true)
}

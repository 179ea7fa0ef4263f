package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// DefaultCgroupPath is the cgroup v2 directory the programs attach to by
// default (where this project's machines mount the v2 hierarchy).
const DefaultCgroupPath = "/sys/fs/cgroup/unified"

// DefaultMissInterval is how often at most the programs report a miss for
// one address.
const DefaultMissInterval = 10 * time.Second

// ProgramsOptions configure Install.
type ProgramsOptions struct {
	// CgroupPath is the cgroup v2 directory to attach to; default
	// DefaultCgroupPath. Sockets of every process in it and below are
	// translated.
	CgroupPath string
	// MissInterval: at most one miss report per address per interval;
	// default DefaultMissInterval.
	MissInterval time.Duration
	// MissBuffer is the capacity of the Misses channel; default 256.
	MissBuffer int
	// Logger; default slog.Default().
	Logger *slog.Logger
}

// attachOrder lists the programs in the order Install attaches them: the
// hooks that restore the VIP before those that translate to a backend, so
// no translated socket misses its reverse translation.
var attachOrder = []string{
	meshrelayProgMrRecvmsg4, meshrelayProgMrRecvmsg6,
	meshrelayProgMrGetpeername4, meshrelayProgMrGetpeername6,
	meshrelayProgMrSendmsg4, meshrelayProgMrSendmsg6,
	meshrelayProgMrConnect4, meshrelayProgMrConnect6,
}

// Programs are the cgroup socket programs of bpf/meshrelay.c, attached to
// a cgroup with pinned links in <PinPath>/links/. They read the maps of
// the BPF datapath they were installed with.
type Programs struct {
	log    *slog.Logger
	usage  *ebpf.Map // usage_outer
	ring   *ebpf.Map
	drops  *ebpf.Map // miss_drops: reports the kernel lost on a full ring
	reader *ringbuf.Reader
	misses chan netip.AddrPort

	dropped   atomic.Uint64
	closeOnce sync.Once
	closeErr  error
}

// Install loads the programs with the maps of dp, and attaches them to
// opts.CgroupPath with links pinned under dp's pin path. If pinned links
// exist (a restart, an upgrade, a layout change), it swaps their programs
// with link.Update, never detaching: sockets are translated throughout.
//
// Call it after the first Apply into dp: from the switch on, the programs
// read dp's maps. Programs reports misses from the moment it is returned.
func Install(dp *BPF, opts ProgramsOptions) (*Programs, error) {
	if opts.CgroupPath == "" {
		opts.CgroupPath = DefaultCgroupPath
	}
	if opts.MissInterval <= 0 {
		opts.MissInterval = DefaultMissInterval
	}
	if opts.MissBuffer <= 0 {
		opts.MissBuffer = 256
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	dp.mu.Lock()
	closed := dp.closed
	dp.mu.Unlock()
	if closed {
		return nil, errClosed
	}

	spec := dp.spec.Copy()
	if err := spec.Variables[meshrelayVarMissIntervalNs].Set(uint64(opts.MissInterval)); err != nil {
		return nil, fmt.Errorf("set miss interval: %w", err)
	}
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{MapReplacements: dp.maps})
	if err != nil {
		return nil, fmt.Errorf("load programs: %w", err)
	}
	// The links keep the programs; the collection's handles are not needed
	// after attaching.
	defer coll.Close()

	cgroupID, err := cgroupID(opts.CgroupPath)
	if err != nil {
		return nil, err
	}
	linkDir := filepath.Join(dp.pinPath, "links")
	if err := os.MkdirAll(linkDir, 0o755); err != nil {
		return nil, fmt.Errorf("create link directory: %w", err)
	}
	for _, name := range attachOrder {
		prog := coll.Programs[name]
		if err := attach(prog, spec.Programs[name].AttachType, opts.CgroupPath, cgroupID, filepath.Join(linkDir, name), opts.Logger); err != nil {
			return nil, fmt.Errorf("attach %s to %s: %w", name, opts.CgroupPath, err)
		}
	}

	p := &Programs{
		log:    opts.Logger,
		misses: make(chan netip.AddrPort, opts.MissBuffer),
	}
	if p.usage, err = dp.maps[meshrelayMapUsageOuter].Clone(); err != nil {
		return nil, fmt.Errorf("usage map: %w", err)
	}
	if p.ring, err = dp.maps[meshrelayMapMissReports].Clone(); err != nil {
		p.usage.Close()
		return nil, fmt.Errorf("miss reports map: %w", err)
	}
	if p.drops, err = dp.maps[meshrelayMapMissDrops].Clone(); err != nil {
		p.usage.Close()
		p.ring.Close()
		return nil, fmt.Errorf("miss drops map: %w", err)
	}
	if p.reader, err = ringbuf.NewReader(p.ring); err != nil {
		p.usage.Close()
		p.ring.Close()
		p.drops.Close()
		return nil, fmt.Errorf("miss reports: %w", err)
	}
	go p.readMisses()
	return p, nil
}

// attach makes the link pinned at pin run prog on the cgroup: updating an
// existing link of that cgroup, or creating and pinning one.
func attach(prog *ebpf.Program, typ ebpf.AttachType, cgroupPath string, cgroupID uint64, pin string, log *slog.Logger) error {
	old, err := link.LoadPinnedLink(pin, nil)
	switch {
	case err == nil:
		info, ierr := old.Info()
		if ierr == nil && info.Cgroup() != nil && info.Cgroup().CgroupId == cgroupID {
			uerr := old.Update(prog)
			old.Close()
			if uerr != nil {
				return fmt.Errorf("update pinned link: %w", uerr)
			}
			return nil
		}
		// A link to another cgroup (the path changed): replace it.
		log.Info("replacing pinned link of another cgroup", "pin", pin, "cgroup", cgroupPath)
		if uerr := old.Unpin(); uerr != nil {
			old.Close()
			return fmt.Errorf("unpin stale link: %w", uerr)
		}
		old.Close()
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("open pinned link: %w", err)
	}

	l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupPath, Attach: typ, Program: prog})
	if err != nil {
		return err
	}
	defer l.Close()
	if err := l.Pin(pin); err != nil {
		return fmt.Errorf("pin link (kernel without bpf_link for cgroups?): %w", err)
	}
	return nil
}

// cgroupID returns the id of the cgroup v2 directory path (its inode).
func cgroupID(path string) (uint64, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(path, &sfs); err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", path, err)
	}
	if sfs.Type != unix.CGROUP2_SUPER_MAGIC {
		return 0, fmt.Errorf("%s is not a cgroup v2 directory", path)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("cgroup %s: %w", path, err)
	}
	return st.Ino, nil
}

// Misses returns the channel of miss reports: VIP:port a socket connected
// (or sent) to that is no frontend but lies in the service CIDRs (see
// BPF.SetServiceCIDRs). The programs report an address at most once per
// MissInterval. When the channel is full, reports are dropped (counted in
// DroppedMisses). Close closes the channel.
func (p *Programs) Misses() <-chan netip.AddrPort { return p.misses }

// DroppedMisses returns how many reports were dropped: on a full channel,
// and by the programs on a full ring buffer (miss_drops, counted in the
// kernel since the map was pinned).
func (p *Programs) DroppedMisses() uint64 {
	var kernel uint64
	if err := p.drops.Lookup(uint32(0), &kernel); err != nil {
		p.log.Debug("reading miss_drops", "err", err)
	}
	return p.dropped.Load() + kernel
}

func (p *Programs) readMisses() {
	defer close(p.misses)
	var rec ringbuf.Record
	for {
		if err := p.reader.ReadInto(&rec); err != nil {
			if !errors.Is(err, os.ErrClosed) {
				p.log.Error("reading miss reports", "error", err)
			}
			return
		}
		var r meshrelayMissReport
		if len(rec.RawSample) < binary.Size(r) {
			continue
		}
		copy(r.Addr[:], rec.RawSample[:16])
		r.Port = binary.NativeEndian.Uint16(rec.RawSample[16:18])
		ap := netip.AddrPortFrom(netip.AddrFrom16(r.Addr).Unmap(), fromNetworkOrder(r.Port))
		select {
		case p.misses <- ap:
		default:
			p.dropped.Add(1)
		}
	}
}

// Usage returns, per frontend id, when a socket last used the frontend
// (refreshed by the programs at most once a second; only frontends used
// since the usage map last evicted them).
func (p *Programs) Usage() (map[uint32]time.Time, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return nil, fmt.Errorf("read monotonic clock: %w", err)
	}
	now, mono := time.Now(), ts.Nano()
	out := make(map[uint32]time.Time)
	// Slot 0 of usage_outer, and slot 1 while it is being resized
	// (lru.go): the later use wins.
	for slot := uint32(0); slot < 2; slot++ {
		var m *ebpf.Map
		if err := p.usage.Lookup(slot, &m); errors.Is(err, ebpf.ErrKeyNotExist) {
			continue
		} else if err != nil {
			return nil, fmt.Errorf("read usage: %w", err)
		}
		var k meshrelayUsageKey
		var v meshrelayUsageValue
		it := m.Iterate()
		for it.Next(&k, &v) {
			if t := now.Add(-time.Duration(mono - int64(v.LastUsedNs))); t.After(out[k.FrontendId]) {
				out[k.FrontendId] = t
			}
		}
		err := it.Err()
		m.Close()
		if err != nil {
			return nil, fmt.Errorf("read usage: %w", err)
		}
	}
	return out, nil
}

// Close stops reading misses and closes the channel. The programs stay
// attached through their pinned links.
func (p *Programs) Close() error {
	p.closeOnce.Do(func() {
		p.closeErr = errors.Join(p.reader.Close(), p.ring.Close(), p.drops.Close(), p.usage.Close())
	})
	return p.closeErr
}

// Uninstall detaches the programs (unpinning their links) and removes
// every map pinned under pinPath, of every layout. Sockets are no longer
// translated afterwards.
func Uninstall(pinPath string) error {
	if pinPath == "" {
		pinPath = DefaultPinPath
	}
	linkDir := filepath.Join(pinPath, "links")
	entries, err := os.ReadDir(linkDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("list links: %w", err)
	}
	var errs []error
	for _, e := range entries {
		pin := filepath.Join(linkDir, e.Name())
		l, err := link.LoadPinnedLink(pin, nil)
		if err != nil {
			errs = append(errs, fmt.Errorf("open link %s: %w", pin, err))
			continue
		}
		// The link detaches when its pin and last descriptor are gone.
		if err := l.Unpin(); err != nil {
			errs = append(errs, fmt.Errorf("unpin link %s: %w", pin, err))
		}
		l.Close()
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := os.RemoveAll(pinPath); err != nil {
		return fmt.Errorf("remove pins: %w", err)
	}
	return nil
}

package datapath

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/cilium/ebpf"
)

// noBatchTable models a kernel without batch map operations.
type noBatchTable struct {
	memTable[BackendKey, BackendValue]
	batchCalls int
}

func (t *noBatchTable) batchUpdate([]Backend) (int, error) {
	t.batchCalls++
	return 0, fmt.Errorf("batch update: %w", ebpf.ErrNotSupported)
}

func (t *noBatchTable) batchDelete([]BackendKey) (int, error) {
	t.batchCalls++
	return 0, fmt.Errorf("batch delete: %w", ebpf.ErrNotSupported)
}

func TestWriterFallsBackWithoutBatchOps(t *testing.T) {
	tbl := &noBatchTable{memTable: memTable[BackendKey, BackendValue]{max: 100}}
	w := &writer{batchSize: 4096, batching: true, log: quietLogger()}
	var c mapCounters
	var as ApplyStats
	var entries []Backend
	for i := range uint32(10) {
		entries = append(entries, Backend{Key: BackendKey{BackendId: i}, Value: NewBackendValue(backendAddr(i))})
	}
	if err := upsert(context.Background(), w, MapBackends, tbl, entries, &c, &as); err != nil {
		t.Fatal(err)
	}
	if w.batching || tbl.batchCalls != 1 {
		t.Errorf("batching %v after %d batch attempts, want a single probe then fallback", w.batching, tbl.batchCalls)
	}
	if as.Syscalls != 10 || as.Batches != 0 || as.Updates != 10 || len(tbl.m) != 10 {
		t.Errorf("fallback: %+v, %d entries; want 10 single updates", as, len(tbl.m))
	}
	keys := []BackendKey{{BackendId: 1}, {BackendId: 99}, {BackendId: 2}}
	if err := remove(context.Background(), w, MapBackends, tbl, keys, &c, &as); err != nil {
		t.Fatal(err)
	}
	if as.Deletes != 2 || len(tbl.m) != 8 {
		t.Errorf("single deletes: %+v, %d entries left", as, len(tbl.m))
	}
}

// TestMemoryIsLean: the scale harness runs thousands of Memory datapaths.
func TestMemoryIsLean(t *testing.T) {
	const n = 2000
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ms := make([]*Memory, n)
	for i := range ms {
		ms[i] = NewMemory(MemoryOptions{Logger: quietLogger()})
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(ms)
	if per := (int64(after.HeapAlloc) - int64(before.HeapAlloc)) / n; per > 1024 {
		t.Errorf("an empty Memory takes %d B of heap, want under 1 KiB", per)
	}
}

package etcdsink

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

// allocated returns the bytes f allocated (the whole process's: an
// embedded etcd runs alongside, so only large differences mean anything).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestStrayKeysCostNothingAndAreSwept: keys under services/ and synced/
// that are not canonical (slice index 2·10⁹, aliased endpoints/010, extra
// segments, a non-canonical shard) cost what any key costs at load, not
// memory sized by a number in them, and the sweep after the first complete
// sync deletes them while the canonical keys stay.
func TestStrayKeysCostNothingAndAreSwept(t *testing.T) {
	c := testenv.Client(t, testenv.StartEtcd(t, embedetcd.Options{Dir: shmDir(t)}).Endpoints())
	ctx := context.Background()
	keep := svcName(1)
	s0 := New(c, testOptions())
	testenv.Run(t, s0.Run)
	s0.Set(keep, newService(keep, []string{vip(1)}, 3, 0), time.Time{})
	s0.Complete([]keyspace.Service{keep})
	waitSynced(t, s0)
	testenv.EventuallyTrue(t, "service written", func() bool { return get(t, c, space.Spec(keep)) != nil })

	clean := New(c, testOptions())
	var cleanBytes uint64
	cleanBytes = allocated(func() {
		if _, err := clean.load(ctx); err != nil {
			t.Fatal(err)
		}
	})

	stray := []string{
		space.ServicePrefix(keep) + "endpoints/2000000000",
		space.ServicePrefix(keep) + "endpoints/010",
		space.ServicePrefix(keep) + "endpoints/-1",
		space.ServicePrefix(keep) + "spec/extra",
		space.ServicesPrefix() + "lonely",
		space.SyncedPrefix() + "0010",
	}
	for _, k := range stray {
		if _, err := c.Put(ctx, k, "x"); err != nil {
			t.Fatal(err)
		}
	}
	s := New(c, testOptions())
	var st *loaded
	strayBytes := allocated(func() {
		var err error
		if st, err = s.load(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if len(st.stray) != len(stray) {
		t.Fatalf("load found %d stray keys, want %d: %q", len(st.stray), len(stray), st.stray)
	}
	// A slice table sized by the index would be gigabytes; a few keys cost
	// kilobytes. The bound leaves room for the embedded etcd's own noise.
	if strayBytes > cleanBytes+(16<<20) {
		t.Fatalf("load with stray keys allocated %d bytes, clean load %d", strayBytes, cleanBytes)
	}

	testenv.Run(t, s.Run)
	s.Set(keep, newService(keep, []string{vip(1)}, 3, 0), time.Time{})
	s.Complete([]keyspace.Service{keep})
	waitSynced(t, s)
	testenv.EventuallyTrue(t, "stray keys deleted", func() bool {
		for _, k := range stray {
			if get(t, c, k) != nil {
				return false
			}
		}
		return true
	})
	if get(t, c, space.Spec(keep)) == nil || get(t, c, space.Slice(keep, 0)) == nil {
		t.Fatal("the sweep of stray keys deleted canonical keys")
	}
}

package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/testsupport/dpfake"
	"github.com/meshrelay/meshrelay/internal/testsupport/istiodsim"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	"github.com/meshrelay/meshrelay/nodeagent"
	"github.com/meshrelay/meshrelay/relay"
)

// TestEtcdRestoredDeletesNothing: etcd is restored from an older copy
// (a backup) that holds the generation and the synced markers naming it,
// but not the services created since. The relay replaces the generation
// and rewrites them; the agent, which loads their namespace, deletes no
// datapath entry meanwhile (docs/contract.md, "Generation and wiped etcd").
func TestEtcdRestoredDeletesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts etcd")
	}
	const services = 20
	w := &world{t: t, sim: newSim(t, istiodsim.Options{Services: services, EndpointsPerService: 2, Namespaces: 1})}
	dir := filepath.Join(t.TempDir(), "etcd")
	startAt := func(dir string) {
		w.etcd = testenv.StartEtcd(t, embedetcd.Options{ClientURL: w.url, Dir: dir})
	}
	startAt(dir)
	w.url = w.etcd.Endpoints()[0]
	w.client = testenv.Client(t, w.etcd.Endpoints())
	w.startRelay(w.client, relay.ModeSotW)

	all := make([]int, services)
	for i := range all {
		all[i] = i
	}
	ns := w.svcKey(0).Namespace
	rec := dpfake.NewRecorder(newMemory())
	a := startAgent(t, w.client, rec, nodeagent.Options{Namespaces: []string{ns}})
	w.converges(rec, all...)
	w.quiesce()

	// The backup: a copy of etcd's data directory, etcd stopped.
	if err := w.etcd.Close(); err != nil {
		t.Fatal(err)
	}
	backup := filepath.Join(t.TempDir(), "backup")
	if err := os.CopyFS(backup, os.DirFS(dir)); err != nil {
		t.Fatal(err)
	}
	startAt(dir)
	gen := string(getKey(t, w, space.Generation()))

	added, err := w.sim.AddServices(5)
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, added...)
	w.converges(rec, all...)
	w.quiesce()
	time.Sleep(time.Second) // several generation checks and probes at the new revision
	changes := a.Stats().Source.GenerationChanges

	if err := w.etcd.Close(); err != nil {
		t.Fatal(err)
	}
	startAt(backup)
	testenv.EventuallyTrue(t, "restore seen by the agent and a new generation written", func() bool {
		g := getKey(t, w, space.Generation())
		return a.Stats().Source.GenerationChanges > changes && g != nil && string(g) != gen
	})
	w.quiesce()
	w.converges(rec, all...)
	if d := rec.DeletedFrontends(); len(d) != 0 {
		t.Errorf("%d frontends deleted across the restore, e.g. %v", len(d), d[:min(len(d), 5)])
	}
	if n := rec.DeletedBackends(); n != 0 {
		t.Errorf("%d backends deleted across the restore", n)
	}
}

// getKey returns key's value in w's etcd, nil when absent or unreachable.
func getKey(t *testing.T, w *world, key string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := w.client.Get(ctx, key)
	if err != nil || len(r.Kvs) == 0 {
		return nil
	}
	return r.Kvs[0].Value
}

package nodeagent

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

// An agent whose --shards differs from the relays' (as their markers say)
// is not ready, and says why.
func TestShardsMismatchIsNotReady(t *testing.T) {
	e := newEnv(t)
	m := testService("ns", 1, 3, 0)
	e.write(m, 1)
	for shard := range 16 {
		b, _ := json.Marshal(map[string]any{"shard": shard, "shards": 16, "cluster": testCluster, "generation": "g1", "relay": "r", "services": 1})
		e.put(space.Synced(shard), string(b))
	}
	ag := start(t, e.client, e.client, newMemory(), Options{Shards: 8, Services: []keyspace.Service{m.Key}})
	testenv.Eventually(t, "not ready for --shards", func() error {
		ok, why := ag.Ready()
		if ok || !strings.Contains(why, "--shards=8") || !strings.Contains(why, "--shards=16") {
			return fmt.Errorf("Ready() = %v, %q", ok, why)
		}
		return nil
	})

	// A matching agent on the same etcd is ready.
	good := start(t, e.client, e.client, newMemory(), Options{Shards: 16, Services: []keyspace.Service{m.Key}})
	testenv.Eventually(t, "matching agent ready", func() error {
		if ok, why := good.Ready(); !ok {
			return fmt.Errorf("not ready: %s", why)
		}
		return nil
	})
	if ok, _ := ag.Ready(); ok {
		t.Fatal("mismatched agent became ready")
	}
}

// An agent whose --cluster has no keys in an etcd holding another
// cluster's says so.
func TestClusterMismatchIsNotReady(t *testing.T) {
	e := newEnv(t)
	other := keyspace.New("elsewhere")
	e.put(other.Generation(), "g9")
	if _, err := e.client.Delete(e.ctx(), space.Generation()); err != nil {
		t.Fatal(err)
	}
	ag := start(t, e.client, e.client, newMemory(), Options{Services: []keyspace.Service{{Namespace: "ns", Name: "a"}}})
	testenv.Eventually(t, "not ready for --cluster", func() error {
		ok, why := ag.Ready()
		if ok || !strings.Contains(why, `"elsewhere"`) || !strings.Contains(why, "--cluster") {
			return fmt.Errorf("Ready() = %v, %q", ok, why)
		}
		return nil
	})
}

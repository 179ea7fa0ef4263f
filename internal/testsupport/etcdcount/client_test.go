package etcdcount

import (
	"context"
	"path/filepath"
	"slices"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
)

func TestCounts(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{Dir: filepath.Join(t.TempDir(), "etcd")})
	raw := testenv.Client(t, srv.Endpoints())
	c := New(raw.KV, raw.Watcher)
	var held []string
	c.BeforeWatch = func(_ context.Context, key string) { held = append(held, key) }
	ctx := context.Background()
	c.Get(ctx, "/s/a/spec")
	c.Get(ctx, "/s/b/", clientv3.WithPrefix())
	c.Txn(ctx).Then(clientv3.OpGet("/g")).Commit()
	wctx, cancel := context.WithCancel(ctx)
	c.Watch(wctx, "/s/a/", clientv3.WithPrefix())
	cancel()
	if n := c.ReadCount("/s/a/spec"); n != 1 {
		t.Errorf("ReadCount = %d", n)
	}
	if n := c.ReadCount("/g"); n != 1 {
		t.Errorf("txn read not counted: %d", n)
	}
	if got, want := c.Touched("/s/"), []string{"/s/a/*", "/s/a/spec", "/s/b/*"}; !slices.Equal(got, want) {
		t.Errorf("Touched = %v, want %v", got, want)
	}
	c.Get(ctx, "/", clientv3.WithPrefix())
	if got := c.Touched("/s/a/"); !slices.Contains(got, "/*") {
		t.Errorf("a wider range read is not reported: %v", got)
	}
	if !slices.Equal(held, []string{"/s/a/"}) {
		t.Errorf("BeforeWatch saw %v", held)
	}
}

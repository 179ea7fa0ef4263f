package testenv

import (
	"context"
	"errors"
	"testing"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
)

func TestRunStopReturnsRunError(t *testing.T) {
	boom := errors.New("boom")
	r := Run(t, func(ctx context.Context) error {
		<-ctx.Done()
		return boom
	})
	if err := r.Stop(); !errors.Is(err, boom) {
		t.Fatalf("Stop = %v, want %v", err, boom)
	}
}

func TestRunStopHidesItsOwnCancellation(t *testing.T) {
	r := Run(t, func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	})
	if err := r.Stop(); err != nil {
		t.Fatalf("Stop = %v, want nil", err)
	}
	select {
	case <-r.Done():
	default:
		t.Fatal("Done not closed after Stop")
	}
}

func TestEtcdRoundTrip(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd; skipped with -short")
	}
	srv := StartEtcd(t, embedetcd.Options{})
	c := Client(t, srv.Endpoints())
	ctx := context.Background()
	if _, err := c.Put(ctx, "/k", "v"); err != nil {
		t.Fatal(err)
	}
	n := 0
	EventuallyTrue(t, "the key is readable", func() bool {
		n++
		resp, err := c.Get(ctx, "/k")
		return err == nil && len(resp.Kvs) == 1 && string(resp.Kvs[0].Value) == "v"
	})
	if n < 1 {
		t.Fatal("condition never evaluated")
	}
}

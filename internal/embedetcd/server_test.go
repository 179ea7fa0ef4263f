package embedetcd

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

func start(t *testing.T, opts Options) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStartPutGet(t *testing.T) {
	s := start(t, Options{})
	if eps := s.Endpoints(); len(eps) != 1 || !strings.HasPrefix(eps[0], "http://127.0.0.1:") || strings.HasSuffix(eps[0], ":0") {
		t.Fatalf("endpoints %v", eps)
	}
	if _, err := os.Stat("/dev/shm"); err == nil && !strings.HasPrefix(s.Dir(), "/dev/shm/") {
		t.Errorf("data dir %s not on /dev/shm", s.Dir())
	}
	c, err := NewClient(s.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	r, err := c.Get(ctx, "k")
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "v" {
		t.Fatalf("get: %v %v", r, err)
	}
	dir := s.Dir()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("temporary dir %s survives Close: %v", dir, err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// TestRestartSameDirAndPort is what the relay's tests do to simulate an etcd
// outage: stop the member, start it again on the same port and data.
func TestRestartSameDirAndPort(t *testing.T) {
	dir := t.TempDir()
	s := start(t, Options{Dir: dir})
	ep := s.Endpoints()[0]
	c, err := NewClient(s.Endpoints())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "k", "before"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("caller's dir removed: %v", err)
	}
	s2 := start(t, Options{Dir: dir, ClientURL: ep})
	if s2.Endpoints()[0] != ep {
		t.Fatalf("restarted on %s, want %s", s2.Endpoints()[0], ep)
	}
	// The old client reconnects by itself.
	r, err := c.Get(ctx, "k")
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "before" {
		t.Fatalf("get after restart: %v %v", r, err)
	}
}

func TestRefusesNonLoopback(t *testing.T) {
	for _, u := range []string{"http://0.0.0.0:0", "http://192.0.2.1:2379", "http://example.com:2379", "https://127.0.0.1:0", "::"} {
		if _, err := Start(context.Background(), Options{ClientURL: u}); err == nil {
			t.Errorf("ClientURL %q accepted", u)
		}
		if _, err := Start(context.Background(), Options{PeerURL: u}); err == nil {
			t.Errorf("PeerURL %q accepted", u)
		}
	}
	for _, u := range []string{"http://localhost:0", "http://127.0.0.2:0", "http://[::1]:0"} {
		if _, err := loopbackURL("client", u, false); err != nil {
			t.Errorf("%q refused: %v", u, err)
		}
	}
}

// recorder is a slog.Handler that counts records by component.
type recorder struct {
	mu   sync.Mutex
	etcd int
}

func (r *recorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *recorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *recorder) WithGroup(string) slog.Handler            { return r }
func (r *recorder) Handle(_ context.Context, rec slog.Record) error {
	rec.Attrs(func(a slog.Attr) bool {
		if a.Key == "component" && a.Value.String() == "etcd" {
			r.mu.Lock()
			r.etcd++
			r.mu.Unlock()
		}
		return true
	})
	return nil
}

func TestEtcdLoggingGoesToLogger(t *testing.T) {
	rec := &recorder{}
	start(t, Options{EtcdLogLevel: "info", Logger: slog.New(rec)})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if rec.etcd == 0 {
		t.Fatal("no etcd log record reached the slog logger at info level")
	}
	if _, err := Start(context.Background(), Options{EtcdLogLevel: "loud"}); err == nil {
		t.Fatal("bad log level accepted")
	}
}

// TestPortTaken: a fixed client port that is taken fails with an error
// Start recognises (and, for ports it picked, would retry).
func TestPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Start(context.Background(), Options{ClientURL: "http://" + ln.Addr().String(), Dir: t.TempDir()})
	if err == nil || !addrInUse(err) {
		t.Fatalf("Start on a taken port: %v, want address in use", err)
	}
	if !picksPort("") || !picksPort("http://127.0.0.1:0") || picksPort("http://"+ln.Addr().String()) {
		t.Fatal("picksPort")
	}
}

// TestTick: Options.Tick sets raft's heartbeat interval and an election
// timeout of ten ticks, and the member still elects itself and serves.
func TestTick(t *testing.T) {
	for _, c := range []struct {
		tick           time.Duration
		wantMs, wantEl uint
	}{{0, 10, 100}, {LongTick, 100, 1000}} {
		s := start(t, Options{Tick: c.tick})
		cfg := s.etcd.Config()
		if cfg.TickMs != c.wantMs || cfg.ElectionMs != c.wantEl {
			t.Errorf("Tick %v: heartbeat %d ms, election %d ms; want %d, %d", c.tick, cfg.TickMs, cfg.ElectionMs, c.wantMs, c.wantEl)
		}
		cl, err := NewClient(s.Endpoints())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := cl.Put(ctx, "k", "v"); err != nil {
			t.Errorf("Tick %v: put: %v", c.tick, err)
		}
		cancel()
		cl.Close()
	}
}

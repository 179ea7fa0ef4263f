package opsserver

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "meshrelay_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Add(3)
	var ready atomic.Bool
	s, err := Start(Options{Listen: "127.0.0.1:0", Pprof: true, Gatherer: reg, Ready: func() (bool, string) { return ready.Load(), "first sync pending" }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	base := "http://" + s.Addr()

	if code, body := get(t, base+"/metrics"); code != 200 || !strings.Contains(body, "meshrelay_test_total 3") {
		t.Fatalf("/metrics: %d %q", code, body)
	}
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	if code, body := get(t, base+"/readyz"); code != 503 || !strings.Contains(body, "first sync pending") {
		t.Fatalf("/readyz before ready: %d %q", code, body)
	}
	ready.Store(true)
	if code, _ := get(t, base+"/readyz"); code != 200 {
		t.Fatalf("/readyz after ready: %d", code)
	}
	if code, _ := get(t, base+"/debug/pprof/"); code != 200 {
		t.Fatalf("/debug/pprof/: %d", code)
	}
}

// TestPprofOffByDefault: without Options.Pprof, /debug/pprof/ and its
// handlers are not served (404), while /metrics is.
func TestPprofOffByDefault(t *testing.T) {
	s, err := Start(Options{Listen: "127.0.0.1:0", Gatherer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	base := "http://" + s.Addr()
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
		if code, _ := get(t, base+p); code != http.StatusNotFound {
			t.Errorf("%s without Pprof: %d, want 404", p, code)
		}
	}
	if code, _ := get(t, base+"/metrics"); code != 200 {
		t.Errorf("/metrics: %d", code)
	}
}

func TestListenError(t *testing.T) {
	if _, err := Start(Options{Listen: "127.0.0.1:notaport"}); err == nil {
		t.Fatal("bad address accepted")
	}
}

func TestStartOrNone(t *testing.T) {
	stop, err := StartOrNone(Options{})
	if err != nil || stop == nil {
		t.Fatalf("empty listen: %v", err)
	}
	stop()
	stop, err = StartOrNone(Options{Listen: "127.0.0.1:0", Gatherer: NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	stop()
	if _, err := StartOrNone(Options{Listen: "127.0.0.1:notaport"}); err == nil {
		t.Fatal("bad address accepted")
	}
}

// TestHealthyAndHandlers: /healthz follows Options.Healthy; an extra
// handler answers on its method and pattern only.
func TestHealthyAndHandlers(t *testing.T) {
	var healthy atomic.Bool
	var posted atomic.Int32
	s, err := Start(Options{
		Listen:   "127.0.0.1:0",
		Gatherer: prometheus.NewRegistry(),
		Healthy:  func() (bool, string) { return healthy.Load(), "writer stuck" },
		Handlers: map[string]http.Handler{"POST /poke": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			posted.Add(1)
		})},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	base := "http://" + s.Addr()
	if code, body := get(t, base+"/healthz"); code != 503 || !strings.Contains(body, "writer stuck") {
		t.Fatalf("/healthz while unhealthy: %d %q", code, body)
	}
	healthy.Store(true)
	if code, _ := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz while healthy: %d", code)
	}
	if code, _ := get(t, base+"/poke"); code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /poke: %d, want 405", code)
	}
	resp, err := http.Post(base+"/poke", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || posted.Load() != 1 {
		t.Fatalf("POST /poke: %d, handler called %d times", resp.StatusCode, posted.Load())
	}
}

package etcdinit_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"

	"github.com/meshrelay/meshrelay/internal/testsupport/testpki"
	"github.com/meshrelay/meshrelay/relay/etcdinit"
)

// fakeAPI is one ConfigMap behind the Kubernetes API's get and merge patch,
// checking the bearer token.
type fakeAPI struct {
	mu      sync.Mutex
	data    map[string]string
	patches int
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer tok" || r.URL.Path != "/api/v1/namespaces/ns/configmaps/eps" {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.Method {
	case http.MethodGet:
	case http.MethodPatch:
		if r.Header.Get("Content-Type") != "application/merge-patch+json" {
			http.Error(w, "bad patch type", http.StatusUnsupportedMediaType)
			return
		}
		var p struct{ Data map[string]string }
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for k, v := range p.Data {
			f.data[k] = v
		}
		f.patches++
	default:
		http.Error(w, "method", http.StatusMethodNotAllowed)
		return
	}
	json.NewEncoder(w).Encode(map[string]any{"data": f.data})
}

// TestConfigMapPublish: the key is patched when it differs, left alone
// when it holds the value; other keys stay; a refused token is an error.
func TestConfigMapPublish(t *testing.T) {
	api := &fakeAPI{data: map[string]string{"other": "kept"}}
	srv := httptest.NewTLSServer(api)
	t.Cleanup(srv.Close)
	tok := filepath.Join(t.TempDir(), "token")
	testpki.WriteFile(t, tok, []byte("tok\n"))
	cm := &etcdinit.ConfigMap{APIServer: srv.URL, Namespace: "ns", Name: "eps", TokenFile: tok, HTTP: srv.Client()}
	ctx := context.Background()
	for i, want := range []bool{true, false} {
		wrote, err := cm.Publish(ctx, "endpoints", "https://127.0.0.1:2379,https://127.0.0.2:2379")
		if err != nil || wrote != want {
			t.Fatalf("publish %d: wrote %v (%v), want %v", i, wrote, err, want)
		}
	}
	if api.data["endpoints"] != "https://127.0.0.1:2379,https://127.0.0.2:2379" || api.data["other"] != "kept" || api.patches != 1 {
		t.Fatalf("configmap %v after %d patches", api.data, api.patches)
	}
	testpki.WriteFile(t, tok, []byte("stolen"))
	if _, err := cm.Publish(ctx, "endpoints", "x"); err == nil {
		t.Fatal("a refused token published")
	}
}

package tlsfiles

import (
	"path/filepath"
	"testing"

	"github.com/meshrelay/meshrelay/internal/testsupport/testpki"
)

// TestNewRefusesBadFiles: configuration errors show at New, not at the
// first connection.
func TestNewRefusesBadFiles(t *testing.T) {
	ca := testpki.NewCA(t, "ca")
	dir := t.TempDir()
	f := ca.Write(t, dir, ca.Client(t, "a"))
	other := ca.Write(t, t.TempDir(), ca.Client(t, "b"))
	garbage := filepath.Join(dir, "garbage")
	testpki.WriteFile(t, garbage, []byte("nothing"))
	for name, o := range map[string]Options{
		"cert without key":  {CAFile: f.CA, CertFile: f.Cert},
		"key of another":    {CAFile: f.CA, CertFile: f.Cert, KeyFile: other.Key},
		"missing CA":        {CAFile: filepath.Join(dir, "none")},
		"CA without a cert": {CAFile: garbage},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	fl, err := New(Options{CAFile: f.CA, CertFile: f.Cert, KeyFile: f.Key, ServerName: "x.test"})
	if err != nil {
		t.Fatal(err)
	}
	if c := fl.Config("127.0.0.1"); c.ServerName != "x.test" || len(c.Certificates) != 1 || c.RootCAs == nil {
		t.Fatalf("config: %+v", c)
	}
}

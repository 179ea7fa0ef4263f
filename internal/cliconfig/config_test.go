package cliconfig

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func flags() *pflag.FlagSet {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.String(ConfigFlag, "", "")
	fs.String("mode", "sotw", "")
	fs.StringSlice("etcd-endpoints", nil, "")
	fs.Duration("window", 100*time.Millisecond, "")
	fs.Int("shards", 16, "")
	return fs
}

func writeConfig(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPrecedence(t *testing.T) {
	cfg := writeConfig(t, "mode: workload\nshards: 4\nwindow: 2s\netcd-endpoints: [http://127.0.0.1:1, http://127.0.0.1:2]\n")
	t.Setenv("MESHRELAY_SHARDS", "8")
	fs := flags()
	if err := fs.Parse([]string{"--config", cfg, "--window", "3s"}); err != nil {
		t.Fatal(err)
	}
	r, err := Load(fs)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.String("mode"); got != "workload" {
		t.Errorf("mode from file: %q", got)
	}
	if got := r.Int("shards"); got != 8 {
		t.Errorf("env over file: shards = %d", got)
	}
	if got := r.Duration("window"); got != 3*time.Second {
		t.Errorf("flag over file: window = %v", got)
	}
	if got := r.Strings("etcd-endpoints"); len(got) != 2 || got[1] != "http://127.0.0.1:2" {
		t.Errorf("list from file: %q", got)
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
}

func TestEnvList(t *testing.T) {
	t.Setenv("MESHRELAY_ETCD_ENDPOINTS", "http://127.0.0.1:1,http://127.0.0.1:2")
	fs := flags()
	fs.Parse(nil)
	r, err := Load(fs)
	if err != nil {
		t.Fatal(err)
	}
	if got := r.Strings("etcd-endpoints"); len(got) != 2 {
		t.Fatalf("env list: %q", got)
	}
}

func TestInvalidValues(t *testing.T) {
	t.Setenv("MESHRELAY_WINDOW", "soon")
	fs := flags()
	fs.Parse([]string{"--mode", "both"})
	r, err := Load(fs)
	if err != nil {
		t.Fatal(err)
	}
	r.Duration("window")
	r.OneOf("mode", "sotw", "workload")
	err = r.Err()
	if ExitCode(err) != 2 || err.Error() != `invalid --window "soon": want a duration such as 100ms or 30s` {
		t.Fatalf("first error: %v (exit %d)", err, ExitCode(err))
	}
}

func TestConfigFileErrors(t *testing.T) {
	for name, body := range map[string]string{
		"unknown key": "mdoe: sotw\n",
		"bad yaml":    "mode: [\n",
	} {
		fs := flags()
		fs.Parse([]string{"--config", writeConfig(t, body)})
		if _, err := Load(fs); ExitCode(err) != 2 {
			t.Errorf("%s: err %v", name, err)
		}
	}
	fs := flags()
	fs.Parse([]string{"--config", "/nonexistent/meshrelay.yaml"})
	if _, err := Load(fs); ExitCode(err) != 2 {
		t.Errorf("missing file: %v", err)
	}
	if ExitCode(errors.New("x")) != 1 || ExitCode(nil) != 0 {
		t.Error("exit codes")
	}
}

func TestStringMap(t *testing.T) {
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs.String(ConfigFlag, "", "")
	fs.StringToString("meta", nil, "")
	fs.Parse([]string{"--meta", "A=1,B=two"})
	r, err := Load(fs)
	if err != nil {
		t.Fatal(err)
	}
	if m := r.StringMap("meta"); len(m) != 2 || m["A"] != "1" || m["B"] != "two" {
		t.Fatalf("flag map: %v", m)
	}
	t.Setenv("MESHRELAY_META", "X=y")
	fs2 := pflag.NewFlagSet("t", pflag.ContinueOnError)
	fs2.String(ConfigFlag, "", "")
	fs2.StringToString("meta", nil, "")
	fs2.Parse(nil)
	r2, _ := Load(fs2)
	if m := r2.StringMap("meta"); m["X"] != "y" {
		t.Fatalf("env map: %v", m)
	}
	t.Setenv("MESHRELAY_META", "novalue")
	r3, _ := Load(fs2)
	if r3.StringMap("meta"); ExitCode(r3.Err()) != 2 {
		t.Fatalf("bad map accepted: %v", r3.Err())
	}
}

func TestExplicit(t *testing.T) {
	cfg := writeConfig(t, "shards: 4\n")
	t.Setenv("MESHRELAY_WINDOW", "1s")
	fs := flags()
	fs.Parse([]string{"--config", cfg, "--mode", "sotw"})
	r, err := Load(fs)
	if err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{"mode": true, "shards": true, "window": true, "etcd-endpoints": false} {
		if got := r.Explicit(key); got != want {
			t.Errorf("Explicit(%q) = %v, want %v", key, got, want)
		}
	}
}

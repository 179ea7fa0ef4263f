package cliconfig

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// testConfig is a main's configuration struct, bound to its flags.
type testConfig struct {
	File   ConfigFile
	Etcd   Etcd
	Log    Log
	Mode   string
	Shards int
	Window time.Duration
	Meta   map[string]string
}

func (c *testConfig) Bind(fs *pflag.FlagSet) {
	c.File.Bind(fs)
	c.Etcd.Bind(fs, "etcd")
	c.Log.Bind(fs)
	fs.StringVar(&c.Mode, "mode", "sotw", "")
	fs.IntVar(&c.Shards, "shards", 16, "")
	fs.DurationVar(&c.Window, "window", time.Second, "")
	fs.StringToStringVar(&c.Meta, "meta", nil, "")
}

func (c *testConfig) Validate() error {
	if err := c.Etcd.Validate(); err != nil {
		return err
	}
	if err := c.Log.Validate(); err != nil {
		return err
	}
	return OneOf("mode", c.Mode, "sotw", "workload")
}

func runBound(t *testing.T, args ...string) (*testConfig, error) {
	t.Helper()
	cfg := &testConfig{}
	ran := false
	cmd := Bound(&cobra.Command{Use: "x"}, cfg, func(context.Context, []string) error { ran = true; return nil })
	cmd.SetArgs(args)
	err := cmd.Execute()
	if err == nil && !ran {
		t.Fatal("run not called")
	}
	return cfg, err
}

func TestOverlayPrecedence(t *testing.T) {
	file := writeConfig(t, "mode: workload\nshards: 4\nwindow: 2s\ncluster: from-file\n"+
		"etcd-endpoints: [http://127.0.0.1:1, http://127.0.0.1:2]\nmeta: {b: 2, a: x}\n")
	t.Setenv("MESHRELAY_SHARDS", "8")
	t.Setenv("MESHRELAY_CLUSTER", "from-env")
	cfg, err := runBound(t, "--config", file, "--cluster", "from-flag")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Etcd.Cluster != "from-flag" {
		t.Errorf("flag over env: cluster %q", cfg.Etcd.Cluster)
	}
	if cfg.Shards != 8 {
		t.Errorf("env over file: shards %d", cfg.Shards)
	}
	if cfg.Mode != "workload" || cfg.Window != 2*time.Second {
		t.Errorf("file over default: mode %q window %v", cfg.Mode, cfg.Window)
	}
	if !slices.Equal(cfg.Etcd.Endpoints, []string{"http://127.0.0.1:1", "http://127.0.0.1:2"}) {
		t.Errorf("list from file: %q", cfg.Etcd.Endpoints)
	}
	if cfg.Meta["a"] != "x" || cfg.Meta["b"] != "2" || len(cfg.Meta) != 2 {
		t.Errorf("map from file: %v", cfg.Meta)
	}
	if cfg.Log.Level != "info" {
		t.Errorf("default: log level %q", cfg.Log.Level)
	}
}

func TestOverlayEnvList(t *testing.T) {
	t.Setenv("MESHRELAY_ETCD_ENDPOINTS", "http://127.0.0.1:1,http://127.0.0.1:2")
	cfg, err := runBound(t)
	if err != nil || len(cfg.Etcd.Endpoints) != 2 {
		t.Fatalf("%v %q", err, cfg.Etcd.Endpoints)
	}
}

func TestOverlayErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		file string
		env  map[string]string
		args []string
		want string
	}{
		"unknown file key": {file: "shards: 4\nno-such: 1\n", want: `unknown key "no-such"`},
		"bad file value":   {file: "shards: many\n", want: `invalid --shards "many"`},
		"bad env value":    {env: map[string]string{"MESHRELAY_WINDOW": "soon"}, want: `invalid --window "soon"`},
		"validate":         {args: []string{"--mode", "both"}, want: `invalid --mode "both": want one of sotw, workload`},
		"cluster":          {args: []string{"--cluster", "a/b"}, want: `invalid --cluster "a/b"`},
		"log level":        {env: map[string]string{"MESHRELAY_LOG_LEVEL": "loud"}, want: `invalid --log-level "loud"`},
		"missing file":     {args: []string{"--config", "/nonexistent/c.yaml"}, want: `invalid --config "/nonexistent/c.yaml"`},
		"bad yaml":         {file: "mode: [\n", want: `invalid --config "`},
		"bad env map":      {env: map[string]string{"MESHRELAY_META": "novalue"}, want: `invalid --meta "novalue"`},
		"unknown flag":     {args: []string{"--no-such-flag"}, want: "unknown flag: --no-such-flag"},
		// The environment is overlaid before Validate runs: the first
		// error is the bad variable, not the flag Validate refuses.
		"first error": {env: map[string]string{"MESHRELAY_WINDOW": "soon"}, args: []string{"--mode", "both"}, want: `invalid --window "soon"`},
	} {
		t.Run(name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			args := tc.args
			if tc.file != "" {
				args = append(args, "--config", writeConfig(t, tc.file))
			}
			_, err := runBound(t, args...)
			if ExitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err = %v (exit %d), want one line with %q", err, ExitCode(err), tc.want)
			}
		})
	}
}

func TestLogLogger(t *testing.T) {
	var b strings.Builder
	l := Log{Level: "warn", Format: "json"}
	log := l.Logger(&b)
	log.Info("hidden")
	log.Warn("shown")
	if strings.Contains(b.String(), "hidden") || !strings.Contains(b.String(), `"msg":"shown"`) {
		t.Fatalf("logger output: %q", b.String())
	}
}

func writeConfig(t *testing.T, body string) string {
	p := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestOverlayEnvMap(t *testing.T) {
	cfg, err := runBound(t, "--meta", "A=1,B=two")
	if err != nil || len(cfg.Meta) != 2 || cfg.Meta["A"] != "1" || cfg.Meta["B"] != "two" {
		t.Fatalf("flag map: %v %v", cfg.Meta, err)
	}
	t.Setenv("MESHRELAY_META", "X=y")
	if cfg, err := runBound(t); err != nil || cfg.Meta["X"] != "y" {
		t.Fatalf("env map: %v %v", cfg.Meta, err)
	}
}

// TestOverlayChanged: a flag set by the environment or the file counts as
// Changed, as one given on the command line does; a defaulted one does not.
func TestOverlayChanged(t *testing.T) {
	file := writeConfig(t, "shards: 4\n")
	t.Setenv("MESHRELAY_WINDOW", "1s")
	cfg := &testConfig{}
	cmd := Bound(&cobra.Command{Use: "x"}, cfg, func(context.Context, []string) error { return nil })
	cmd.SetArgs([]string{"--config", file, "--mode", "sotw"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	for key, want := range map[string]bool{"mode": true, "shards": true, "window": true, "etcd-endpoints": false} {
		if got := cmd.Flags().Lookup(key).Changed; got != want {
			t.Errorf("%s: Changed = %v, want %v", key, got, want)
		}
	}
}

func TestBoundRunError(t *testing.T) {
	boom := errors.New("boom")
	cmd := Bound(&cobra.Command{Use: "y"}, &testConfig{}, func(context.Context, []string) error { return boom })
	cmd.SetArgs(nil)
	if err := cmd.Execute(); !errors.Is(err, boom) || ExitCode(err) != 1 {
		t.Fatalf("run error: %v (exit %d)", err, ExitCode(err))
	}
	if ExitCode(nil) != 0 {
		t.Error("exit code of nil")
	}
}

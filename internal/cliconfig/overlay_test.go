package cliconfig

import (
	"context"
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

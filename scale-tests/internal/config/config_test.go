package config

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestRelaysFlagAndItsFormerName(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{nil, 1},
		{[]string{"--relays", "3"}, 3},
		{[]string{"--relay-replicas", "2"}, 2},
	} {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		c := Register(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if c.RelayReplicas != tc.want {
			t.Errorf("%v: %d relays, want %d", tc.args, c.RelayReplicas, tc.want)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%v: %v", tc.args, err)
		}
	}
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	c := Register(fs)
	if err := fs.Parse([]string{"--relays", "9"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err == nil {
		t.Error("--relays 9 validated, want 1..8")
	}
	if f := fs.Lookup("relay-replicas"); f == nil || !f.Hidden || f.Deprecated == "" {
		t.Errorf("--relay-replicas: %+v, want hidden and deprecated", f)
	}
}

func TestXDSAPIFlag(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		api     string
		invalid bool
	}{
		{args: nil, api: APISotW},
		{args: []string{"--xds-api", "workload"}, api: APIWorkload},
		{args: []string{"--mode", "workload"}, api: APIWorkload},
		{args: []string{"--mode", "relay"}, invalid: true},
		{args: []string{"--xds-api", "sotw"}, api: APISotW},
		{args: []string{"--xds-api", "delta"}, invalid: true},
	} {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		c := Register(fs)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		err := c.Validate()
		if tc.invalid {
			if err == nil || !strings.Contains(err.Error(), "--xds-api") {
				t.Errorf("%v: Validate() = %v, want an --xds-api error", tc.args, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tc.args, err)
		}
		if c.API() != tc.api {
			t.Errorf("%v: API() = %q, want %q", tc.args, c.API(), tc.api)
		}
	}
	if api := (&Config{}).API(); api != APISotW {
		t.Errorf("zero Config: API() = %q, want %q (summaries from before the flag)", api, APISotW)
	}
}

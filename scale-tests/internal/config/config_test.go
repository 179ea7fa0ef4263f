package config

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"
)

func TestXDSAPIFlag(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		api     string
		invalid bool
	}{
		{args: nil, api: APISotW},
		{args: []string{"--xds-api", "workload"}, api: APIWorkload},
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

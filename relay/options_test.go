package relay

import (
	"strings"
	"testing"

	"github.com/meshrelay/meshrelay/relay/etcdsink"
)

func TestOptionsValidate(t *testing.T) {
	ok := Options{Istiod: "127.0.0.1:15010"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for name, tc := range map[string]struct {
		opts Options
		want string
	}{
		"no istiod":      {Options{}, "no Istiod"},
		"cluster slash":  {Options{Istiod: "a:1", Cluster: "a/b"}, "Cluster"},
		"shards":         {Options{Istiod: "a:1", Shards: 5000}, "Shards"},
		"sink relay id":  {Options{Istiod: "a:1", Sink: etcdsink.Options{RelayID: "x"}}, "not on Options.Sink"},
		"sink shards":    {Options{Istiod: "a:1", Sink: etcdsink.Options{Shards: 2}}, "not on Options.Sink"},
		"sink max delay": {Options{Istiod: "a:1", Sink: etcdsink.Options{Window: 2, MaxDelay: 1}}, "MaxDelay"},
		"sink negative":  {Options{Istiod: "a:1", Sink: etcdsink.Options{OpsPerSecond: -1}}, "OpsPerSecond"},
	} {
		if err := tc.opts.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want %q", name, err, tc.want)
		}
		if _, err := New(nil, tc.opts); err == nil {
			t.Errorf("%s: New accepted invalid options", name)
		}
	}
}

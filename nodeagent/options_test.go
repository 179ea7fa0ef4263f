package nodeagent

import (
	"errors"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/nodeagent/etcdsource"
)

func TestOptionsValidate(t *testing.T) {
	if err := (Options{}).Validate(); err != nil {
		t.Fatalf("zero options: %v", err)
	}
	// Fields New does not overwrite are the caller's to tune.
	if err := (Options{Source: etcdsource.Options{MaxNegative: 10}}).Validate(); err != nil {
		t.Errorf("Source.MaxNegative refused: %v", err)
	}
	for name, c := range map[string]struct {
		o     Options
		field string
	}{
		"cluster":        {Options{Cluster: "a/b"}, "Cluster"},
		"shards":         {Options{Shards: keyspace.MaxShards + 1}, "Shards"},
		"negative":       {Options{Shards: -1}, "Shards"},
		"namespace":      {Options{Namespaces: []string{"ok", ""}}, "Namespaces"},
		"cidr":           {Options{ServiceCIDRs: []netip.Prefix{{}}}, "ServiceCIDRs"},
		"service":        {Options{Services: []keyspace.Service{{Namespace: "ns"}}}, "Services"},
		"source cluster": {Options{Source: etcdsource.Options{Cluster: "x"}}, "Source"},
		"source shards":  {Options{Source: etcdsource.Options{Shards: 4}}, "Source"},
		"source logger":  {Options{Source: etcdsource.Options{Logger: slog.New(slog.DiscardHandler)}}, "Source"},
	} {
		var fe *FieldError
		if err := c.o.Validate(); !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%s: Validate = %v, want a FieldError of %s", name, err, c.field)
		}
	}
}

package keyspace

import (
	"strings"
	"testing"
)

func TestNewGeneration(t *testing.T) {
	a, b := NewGeneration(), NewGeneration()
	if len(a) != 32 || a == b {
		t.Fatalf("generation ids %q %q", a, b)
	}
}

func TestIncarnation(t *testing.T) {
	type obs struct {
		gen     string
		present bool
		rev     int64
		rebuilt string // "" = not rebuilt, else a substring of the reason
	}
	cases := map[string][]obs{
		"baseline then same":      {{"g1", true, 10, ""}, {"g1", true, 12, ""}, {"g1", true, 0, ""}},
		"replaced":                {{"g1", true, 10, ""}, {"g2", true, 20, "replaced"}, {"g2", true, 21, ""}},
		"deleted":                 {{"g1", true, 10, ""}, {"", false, 11, "missing"}, {"", false, 12, ""}},
		"created":                 {{"", false, 5, ""}, {"g1", true, 6, "created"}},
		"revision backwards":      {{"g1", true, 100, ""}, {"g1", true, 3, "backwards from 100 to 3"}, {"g1", true, 4, ""}},
		"absent value is ignored": {{"x", false, 5, ""}, {"y", false, 6, ""}},
	}
	for name, seq := range cases {
		t.Run(name, func(t *testing.T) {
			var in Incarnation
			for i, o := range seq {
				rebuilt, reason := in.Observe(o.gen, o.present, o.rev)
				if rebuilt != (o.rebuilt != "") || !strings.Contains(reason, o.rebuilt) {
					t.Fatalf("observation %d %+v: rebuilt=%v reason=%q", i, o, rebuilt, reason)
				}
			}
		})
	}
}

func TestIncarnationDiffersAdvanceReset(t *testing.T) {
	var in Incarnation
	if rebuilt, _ := in.Differs("g", true, 1); rebuilt || in.Known() {
		t.Fatal("zero value reported a rebuild or knows something")
	}
	in.Observe("g1", true, 10)
	if rebuilt, _ := in.Differs("g2", true, 11); !rebuilt {
		t.Fatal("Differs missed a replaced generation")
	}
	if id, ok := in.Generation(); !ok || id != "g1" {
		t.Fatalf("Differs recorded: %q %v", id, ok)
	}
	in.Advance(50)
	if in.Revision() != 50 {
		t.Fatalf("Advance: revision %d", in.Revision())
	}
	if rebuilt, reason := in.Differs("g1", true, 40); !rebuilt || !strings.Contains(reason, "backwards") {
		t.Fatalf("revision below an advanced one: %v %q", rebuilt, reason)
	}
	in.Advance(20)
	if in.Revision() != 50 {
		t.Fatal("Advance lowered the revision")
	}
	in.Reset()
	if rebuilt, _ := in.Observe("g9", true, 1); rebuilt || !in.Known() {
		t.Fatal("after Reset the next observation is not a baseline")
	}
}

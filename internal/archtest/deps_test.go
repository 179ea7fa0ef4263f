package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/meshrelay/meshrelay"

type pkg struct {
	ImportPath   string
	Deps         []string
	Imports      []string
	GoFiles      []string
	TestImports  []string
	XTestImports []string
}

// listPackages runs `go list -deps=false -json ./...` from the module root.
func listPackages(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", "./...")
	cmd.Dir = "../.."
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Skipf("go command unavailable: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(out)
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, p)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	if len(pkgs) == 0 {
		t.Fatal("go list found no packages")
	}
	return pkgs
}

// dpfake is the test support package of the node agent's datapath.
const dpfake = module + "/internal/testsupport/dpfake"

func under(path, prefix string) bool {
	return path == prefix || strings.HasPrefix(path, prefix+"/")
}

// rule forbids packages under from (transitively) depending on packages
// matching any of forbidden.
type rule struct {
	from      string
	forbidden []string
	except    []string // packages under from that the rule does not cover
}

var rules = []rule{
	{from: module + "/relay", forbidden: []string{module + "/nodeagent", "github.com/cilium/ebpf"}},
	{from: module + "/nodeagent", forbidden: []string{module + "/relay"}},
	{from: module + "/internal", forbidden: []string{module + "/relay", module + "/nodeagent", "github.com/cilium/ebpf"},
		except: []string{module + "/internal/archtest", dpfake}},
	// The datapath fakes wrap nodeagent/datapath (and so link cilium/ebpf
	// through it); they stay apart from the relay.
	{from: dpfake, forbidden: []string{module + "/relay"}},
	{from: module + "/proto", forbidden: []string{module + "/relay", module + "/nodeagent", module + "/internal"}},
}

func TestDependencyDirection(t *testing.T) {
	pkgs := listPackages(t)
	checked := 0
	for _, p := range pkgs {
		for _, r := range rules {
			if !under(p.ImportPath, r.from) || excepted(p.ImportPath, r.except) {
				continue
			}
			checked++
			for _, d := range p.Deps {
				for _, f := range r.forbidden {
					if under(d, f) {
						t.Errorf("%s depends on %s (forbidden by rule %q)", p.ImportPath, d, r.from)
					}
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("no package was checked")
	}
}

// TestOnlyDatapathImportsEBPF: cilium/ebpf is imported directly by the
// datapath package (and its subpackages) only.
func TestOnlyDatapathImportsEBPF(t *testing.T) {
	for _, p := range listPackages(t) {
		if under(p.ImportPath, module+"/nodeagent/datapath") {
			continue
		}
		for _, imp := range p.Imports {
			if under(imp, "github.com/cilium/ebpf") {
				t.Errorf("%s imports %s; only nodeagent/datapath may", p.ImportPath, imp)
			}
		}
	}
}

// TestRelayAndNodeAgentTestsStayApart: relay and nodeagent never import
// each other, not even in their tests; only the e2e packages (tests
// only) import both.
func TestRelayAndNodeAgentTestsStayApart(t *testing.T) {
	for _, p := range listPackages(t) {
		var other string
		switch {
		case under(p.ImportPath, module+"/nodeagent"):
			other = module + "/relay"
		case under(p.ImportPath, module+"/relay"):
			other = module + "/nodeagent"
		default:
			continue
		}
		for _, imp := range append(append(p.Imports, p.TestImports...), p.XTestImports...) {
			if under(imp, other) {
				t.Errorf("%s (or its tests) imports %s", p.ImportPath, imp)
			}
		}
	}
}

// e2ePackages hold the end-to-end tests and the reliability suite; they
// must hold tests only.
var e2ePackages = []string{module + "/e2e", module + "/e2e/chaos"}

func TestE2EHoldsTestsOnly(t *testing.T) {
	found := 0
	for _, p := range listPackages(t) {
		if !slices.Contains(e2ePackages, p.ImportPath) {
			continue
		}
		found++
		if len(p.GoFiles) != 1 || p.GoFiles[0] != "doc.go" {
			t.Errorf("%s has non-test files %v; it may only hold tests and doc.go", p.ImportPath, p.GoFiles)
		}
	}
	if found != len(e2ePackages) {
		t.Errorf("found %d of the packages %v", found, e2ePackages)
	}
}

// etcdClientPackages are the etcd client's import paths.
var etcdClientPackages = []string{"go.etcd.io/etcd/client", "go.etcd.io/etcd/api"}

// TestNodeAgentLibraryDoesNotImportEtcd: package nodeagent reaches etcd only
// through nodeagent/etcdsource, so it imports no etcd package itself.
func TestNodeAgentLibraryDoesNotImportEtcd(t *testing.T) {
	found := false
	for _, p := range listPackages(t) {
		if p.ImportPath != module+"/nodeagent" {
			continue
		}
		found = true
		for _, imp := range p.Imports {
			for _, e := range etcdClientPackages {
				if under(imp, e) || strings.HasPrefix(imp, e+"/") {
					t.Errorf("package nodeagent imports %s; its etcd access belongs in nodeagent/etcdsource", imp)
				}
			}
		}
	}
	if !found {
		t.Fatal("package nodeagent not found")
	}
}

// shippedBinaries are the commands users deploy.
var shippedBinaries = []string{module + "/relay/cmd/relay", module + "/nodeagent/cmd/nodeagent"}

// testSupport is the tree of simulators, fakes and helpers for tests, the
// demo and the scale harness.
const testSupport = module + "/internal/testsupport"

// TestShippedBinariesLinkNoTestSupport: neither binary links a package of
// internal/testsupport (nor package testing).
func TestShippedBinariesLinkNoTestSupport(t *testing.T) {
	seen := 0
	for _, p := range listPackages(t) {
		if !slices.Contains(shippedBinaries, p.ImportPath) {
			continue
		}
		seen++
		for _, d := range p.Deps {
			if under(d, testSupport) || d == "testing" {
				t.Errorf("%s links %s", p.ImportPath, d)
			}
		}
	}
	if seen != len(shippedBinaries) {
		t.Fatalf("found %d of the shipped binaries %v", seen, shippedBinaries)
	}
}

func excepted(path string, except []string) bool {
	for _, e := range except {
		if under(path, e) {
			return true
		}
	}
	return false
}

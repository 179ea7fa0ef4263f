package archtest

import (
	"encoding/json"
	"io"
	"os/exec"
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
	{from: module + "/nodeagent", forbidden: []string{module + "/relay"}, except: []string{nodeagentE2E}},
	{from: module + "/internal", forbidden: []string{module + "/relay", module + "/nodeagent", "github.com/cilium/ebpf"},
		except: []string{module + "/internal/archtest"}},
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

// nodeagentE2E is the one package under nodeagent whose tests may import
// the relay: the end-to-end tests wire simulator, relay, etcd and agents.
const nodeagentE2E = module + "/nodeagent/e2e"

// TestNodeAgentTestsDoNotImportRelay: the node agent's packages do not
// import the relay even in their tests, except nodeagent/e2e, which holds
// tests only (its one non-test file is doc.go).
func TestNodeAgentTestsDoNotImportRelay(t *testing.T) {
	found := false
	for _, p := range listPackages(t) {
		if p.ImportPath == nodeagentE2E {
			found = true
			if len(p.GoFiles) != 1 || p.GoFiles[0] != "doc.go" {
				t.Errorf("%s has non-test files %v; it may only hold tests and doc.go", p.ImportPath, p.GoFiles)
			}
			continue
		}
		if !under(p.ImportPath, module+"/nodeagent") {
			continue
		}
		for _, imp := range append(p.TestImports, p.XTestImports...) {
			if under(imp, module+"/relay") {
				t.Errorf("tests of %s import %s; only %s may", p.ImportPath, imp, nodeagentE2E)
			}
		}
	}
	if !found {
		t.Errorf("package %s not found", nodeagentE2E)
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

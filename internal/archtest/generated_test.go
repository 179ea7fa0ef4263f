package archtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// generatedFiles are the committed outputs of `make generate`, by pattern.
var generatedPatterns = []string{"*.pb.go", "*_bpfel.go", "*_bpfel.o"}

// TestGeneratedUpToDate copies the tracked sources to a scratch tree, runs
// `make generate` there and compares every generated file with the
// committed one.
func TestGeneratedUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("regenerates protobuf and bpf objects; skipped in -short")
	}
	for _, tool := range []string{"protoc", "clang", "make", "git"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make tools installs it); cannot check generated code", tool)
		}
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	files := gitFiles(t, root)
	scratch := t.TempDir()
	var generated []string
	for _, f := range files {
		src := filepath.Join(root, f)
		b, err := os.ReadFile(src)
		if os.IsNotExist(err) {
			continue // deleted in the work tree
		} else if err != nil {
			t.Fatal(err)
		}
		if isGenerated(f) {
			generated = append(generated, f)
			continue // must be recreated by make generate
		}
		dst := filepath.Join(scratch, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if len(generated) == 0 {
		t.Fatal("no generated files found in the repository")
	}
	cmd := exec.Command("make", "generate")
	cmd.Dir = scratch
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make generate: %v\n%s", err, out)
	}
	for _, f := range generated {
		want, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(scratch, f))
		if err != nil {
			t.Errorf("%s: not produced by make generate: %v", f, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale: run 'make generate' and commit the result", f)
		}
	}
}

func isGenerated(path string) bool {
	for _, p := range generatedPatterns {
		if ok, _ := filepath.Match(p, filepath.Base(path)); ok {
			return true
		}
	}
	return false
}

// gitFiles lists tracked and untracked-but-not-ignored files.
func gitFiles(t *testing.T, root string) []string {
	t.Helper()
	cmd := exec.Command("git", "ls-files", "--cached", "--others", "--exclude-standard")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Skipf("not a git checkout: %v", err)
	}
	return strings.Fields(string(out))
}

package chaos

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// result is one row of the results table.
type result struct {
	Case     string // test name
	Injected string // what was injected and how
	Outcome  string // "pass", "FAIL" or "skipped"
	Converge time.Duration
	Kept     string // entries kept through the fault (fewest seen / before)
	Writes   string // service keys written to etcd, or datapath entries written
	Figures  string // other figures (memory, CPU, reads)
}

var (
	resultsMu sync.Mutex
	results   []result
)

// report records r for the table when the test ends (with its outcome)
// and prints the case's progress line.
func report(t *testing.T, r *result) {
	t.Cleanup(func() {
		r.Case = t.Name()
		switch {
		case t.Failed():
			r.Outcome = "FAIL"
		case t.Skipped():
			if r.Outcome == "" {
				r.Outcome = "skipped"
			}
		default:
			r.Outcome = "pass"
		}
		fmt.Printf("chaos: %-44s %-8s converge=%v kept=%s writes=%s %s\n", r.Case, r.Outcome, r.Converge.Round(time.Millisecond), r.Kept, r.Writes, r.Figures)
		resultsMu.Lock()
		results = append(results, *r)
		resultsMu.Unlock()
	})
}

const (
	beginMarker = "<!-- chaos-results:begin -->"
	endMarker   = "<!-- chaos-results:end -->"
)

func renderResults() string {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	if len(results) == 0 {
		return ""
	}
	var b strings.Builder
	sc := currentScale()
	fmt.Fprintf(&b, "Scale `%s` (%d services × %d endpoints, %d agents declaring %d services each, a %v burst, a %d-address scan), %s.\n\n",
		*scaleFlag, sc.Services, sc.Endpoints, sc.Agents, sc.Declared, sc.Burst, sc.Scan, time.Now().UTC().Format("2006-01-02"))
	b.WriteString("| case | injected (how) | outcome | converged in | entries kept (fewest / before) | writes | other figures | reproduce |\n")
	b.WriteString("|---|---|---|---:|---:|---:|---|---|\n")
	for _, r := range results {
		conv := "—"
		if r.Converge > 0 {
			conv = r.Converge.Round(time.Millisecond).String()
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s | %s | `go test ./e2e/chaos -run '^%s$' -v -args -chaos.scale=%s` |\n",
			r.Case, r.Injected, r.Outcome, conv, orDash(r.Kept), orDash(r.Writes), orDash(r.Figures), r.Case, *scaleFlag)
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// writeResults replaces the text between the markers of the markdown file
// path with table.
func writeResults(path, table string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("results: %w", err)
	}
	s := string(b)
	i, j := strings.Index(s, beginMarker), strings.Index(s, endMarker)
	if i < 0 || j < i {
		return fmt.Errorf("results: %s has no %s … %s section", path, beginMarker, endMarker)
	}
	s = s[:i+len(beginMarker)] + "\n" + table + s[j:]
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}

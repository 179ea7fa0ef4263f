package report

import (
	"fmt"
	"io"

	"github.com/meshrelay/meshrelay/scale-tests/internal/results"
)

// Outcome prints the targets and where the results are.
func Outcome(w io.Writer, sum *results.Summary) {
	fmt.Fprintf(w, "\nresults: %s/report.md\n", sum.Config.Out)
	for _, t := range sum.Targets {
		fmt.Fprintf(w, "  %-7s %s: %s\n", t.Status, t.Target, t.Measured)
	}
	for _, e := range sum.Errors {
		fmt.Fprintf(w, "ERROR: %s\n", e)
	}
	if sum.OK {
		fmt.Fprintln(w, "PASS: every node of every mode matched the simulator's truth")
	} else {
		fmt.Fprintln(w, "FAIL")
	}
}

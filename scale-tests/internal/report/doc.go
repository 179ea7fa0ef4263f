// Package report turns a run's results into what a reader sees: the
// targets judged (Targets), report.md (Write), the PNG plots
// (WritePlots) and the outcome printed at the end of a run (Outcome).
// Publish writes the whole results directory.
//
// Imported by the harness's main (scale-tests) and
// scale-tests/internal/scenario.
package report

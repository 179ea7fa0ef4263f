// Package results is what a run measured, as typed values: Summary (the
// results directory's summary.json) with one Mode per mode run, its
// components, Istiod, per-node, write, lag and scenario-specific figures.
//
// Imported by scale-tests/internal/scenario (which fills it),
// scale-tests/internal/report (which judges and writes it),
// scale-tests/internal/roles (the node pools' totals) and the harness's
// main.
package results

// Package config is the scale harness's configuration: the flags of one
// run (scenario, mesh and workload sizes, modes, upstream xDS API), their
// defaults and their validation.
//
// Imported by the harness's main (scale-tests), which binds it to the
// flags, and by the packages that run and report a run
// (scale-tests/internal/{scenario, results, report}).
package config

// Package launch runs the harness's components as processes of their
// own, so that /proc attributes CPU time and memory to each: the harness
// re-executes its own binary with a hidden --role flag (Launcher.Start),
// and the child's main (RunChild) serves the control API and prints a
// READY line once it serves. Children listen on 127.0.0.1 only, die with
// the harness (Pdeathsig on Linux, and EOF on their stdin) and are
// stopped by PID. A child that exits without being asked to is reported
// on Launcher.Died.
//
// Imported by the harness's main (scale-tests: RunChild),
// scale-tests/internal/roles (RoleFunc, DecodeConfig) and
// scale-tests/internal/scenario (Launcher, Component).
package launch

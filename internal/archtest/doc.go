// Package archtest holds the repository-wide checks: the dependency
// direction between meshrelay's packages (ARCHITECTURE.md) and that the
// committed generated code matches its sources.
//
// It has no non-test code and nothing imports it.
package archtest

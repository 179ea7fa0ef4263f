// Package testenv holds the helpers every test of meshrelay shares: a test
// logger, a poll-until-true, an embedded etcd and a client stopped by the
// test, and a run-until-the-test-ends for anything with a Run(ctx) method.
//
// Only tests, the end-to-end suite and the scale harness's own tests import
// it; the shipped binaries never link it (checked by internal/archtest).
package testenv

// Package measure holds what the harness measures with:
//
//   - Sampler reads every component's CPU time and RSS from /proc once a
//     second, and during the scenario its CPU every 5 ms (Trace) for the
//     CPU of the largest fan-out (LargestFanout, Fanout); Machine
//     describes the host;
//   - Recorder, in the simulator's process, turns the simulator's
//     mutations into UpstreamEvents stamped with the push that carried
//     them; Probe wraps a simulated node's datapath and logs when each
//     backend address becomes reachable or stops being reachable
//     (ApplySample, SampleLog); ComputeLag matches the two into the
//     push → map propagation Lag, and ComputeStages splits relay mode's
//     lag at the relay, etcd and the agent (CommitLog, DeliveryLog);
//   - ByteCounter counts what a gRPC client receives on the wire, and
//     ScrapeEtcd reads etcd's own metrics.
//
// Imported by scale-tests/internal/roles (Recorder, Probe, ByteCounter in
// the children), scale-tests/internal/scenario (Sampler, ComputeLag,
// ScrapeEtcd), scale-tests/internal/results (the types a summary holds)
// and scale-tests/internal/report.
package measure

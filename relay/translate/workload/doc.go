// Package workload turns Istio's ambient workload API (istio.workload.Address
// resources, each a Service or a Workload, as pkg/workloadapi Go types) into
// meshrelay's service model: one model.Service per Service resource. It is the
// workload-mode sibling of relay/translate, which does the same from a
// sidecar's CDS, EDS, LDS and RDS.
//
// The package is pure: deterministic, no I/O, no goroutines, no clocks, no
// logging. The relay imports it (fed by relay/xds/delta), and so does the
// scale harness for its workload-API direct nodes; it imports
// internal/keyspace, internal/model, the generated value schema, Istio's
// published workloadapi types and protojson.
//
// # Services
//
// A Service resource becomes one ServiceSpec keyed by its namespace and name:
//
//   - hostname is the Service's hostname;
//   - vips are the IPs of its addresses, sorted and deduplicated (a dual-stack
//     or multi-VIP service has several); the address's network is not kept;
//   - each Port becomes a ServicePort{port: service_port, target_port}, TCP
//     (the workload API carries TCP only), sorted by port. A target_port of 0
//     (a named target port that differs per pod) is replaced by the target
//     port most of the service's endpoints use for it (ties: the lowest);
//   - load_balancing is ROUND_ROBIN. The workload API's LoadBalancing (STRICT
//     or FAILOVER locality preference, PASSTHROUGH) has no field in the value
//     schema yet and is not carried.
//
// Services are joined to workloads by "<namespace>/<hostname>", the key of a
// Workload's services map. Should two Service resources name the same
// namespace and name (different hostnames), the lexically smallest hostname
// wins and the other is not translated.
//
// # Endpoints
//
// Each Workload is an endpoint of every service in its services map, one
// endpoint per address (a dual-stack pod gives two):
//
//   - address is the workload address; addresses that are not 4 or 16 bytes
//     are skipped;
//   - target_ports maps every service port the workload lists for that
//     service to its target port (a listed port the Service does not have is
//     ignored; an empty list means every service port with the Service's
//     target port; a target port of 0 means the Service's, then the service
//     port itself); port is the target of the lowest of them;
//   - health is HEALTHY or UNHEALTHY from the Workload's status;
//   - node_name is the Workload's node, locality "region/zone/subzone" ("" when
//     none), weight the Workload's capacity (1 when unset or 0).
//
// Endpoints are sorted by address then port; two workloads giving the same
// address and port yield one endpoint (the smallest workload uid's).
//
// Waypoints, network gateways, networks, tunnel protocols and authorization
// policy names are not used yet: the datapath connects to workload addresses
// directly.
//
// # Authorization policies
//
// Authorization resources (istio.security.Authorization) are not joined to
// services: AuthorizationValue only encodes each one, as canonical protobuf
// JSON, for the relay to store under authorizations/<namespace>/<name> for a
// later policy feature (docs/contract.md, section 1).
//
// # Incrementality
//
// An Index keeps the resources and the membership of workloads in services,
// so that a Workload change re-translates only the services it belongs to
// (before and after the change) and a Service change only that service.
package workload

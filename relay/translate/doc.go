// Package translate turns the xDS that Istiod serves to a sidecar (CDS
// clusters, EDS ClusterLoadAssignments, LDS listeners, RDS route
// configurations, as go-control-plane v3 messages) into meshrelay's service
// model: one model.Service per Kubernetes service or ServiceEntry host.
//
// The package is pure: deterministic, no I/O, no goroutines, no clocks, no
// logging. Problems are returned in a Report. Package relay and the scale
// harness import it; it imports internal/keyspace, internal/model and the
// generated value schema.
//
// # Which clusters are services
//
// A service is made of the default outbound clusters of one hostname:
// clusters named outbound|<port>||<hostname> (empty subset), one per service
// port. Subset clusters (outbound|80|v1|host), inbound|... clusters,
// BlackHoleCluster, PassthroughCluster, InboundPassthroughCluster and names
// that do not parse are ignored and counted in Report.IgnoredClusters.
//
// The service's namespace and name come from the hostname when it has the
// Kubernetes form <name>.<namespace>.svc.<domain>. Otherwise (ServiceEntry
// hosts such as api.example.com) they come from the cluster's Istio metadata:
// metadata.filter_metadata["istio"].services is a list of {host, name,
// namespace}, and the entry whose host equals the hostname names the
// service. A cluster for which neither works is ignored, with that reason.
// Should two hostnames name the same service, the lexically smallest
// hostname wins and the other's clusters are dropped with a warning.
//
// Beside services, filter_metadata["istio"] may carry two optional string
// fields meshrelay reads: port_name (ServicePort.name) and protocol ("TCP",
// "UDP", "SCTP"). A port is UDP when protocol says so, when its name follows
// Istio's convention udp or udp-<suffix>, or when every endpoint's socket
// address says UDP; otherwise it is TCP. The load-balancing policy is the
// lowest port's: a recognised load_balancing_policy extension first, then
// lb_policy (ROUND_ROBIN when unset or unknown).
//
// # Endpoints
//
// EDS clusters take their endpoints from the assignment named
// eds_cluster_config.service_name (the cluster name when empty); STATIC,
// STRICT_DNS and LOGICAL_DNS clusters from their inline load_assignment.
// Only endpoints with an IP socket address and a port are kept; others
// (hostnames of DNS clusters, pipes, Envoy internal addresses, named ports)
// are counted in Report.SkippedEndpoints. An endpoint's weight defaults to 1,
// its locality is "region/zone/subzone" (empty when the assignment gives
// none), its health maps EDS health one to one, and its node name is read
// from filter_metadata["istio"] node_name (or nodeName) when present.
// Priorities, locality weights and additional addresses are not carried.
//
// Endpoints of all the service's ports are merged by address: one
// v1.Endpoint per address, with target_ports[servicePort] = targetPort for
// every port it serves and port, weight, locality, health and node name taken
// from the lowest service port it serves. When one port lists the same
// address with several target ports, the address yields one endpoint per
// target port (the n-th smallest of every port go together). A ServicePort's
// target_port is the target port most of its endpoints use (ties: the
// lowest), 0 without endpoints.
//
// # VIPs
//
// A listener named <ip>_<port> with a specific IP (not 0.0.0.0 or ::) gives
// <ip> to the hostname its tcp_proxy filters route to. A virtual host of a
// route configuration gives every domain that is an IP literal (":port" and
// IPv6 brackets stripped) to the hostname it routes to. When a listener or
// virtual host routes to several hostnames, the owner is the one among its
// destinations on the listener's port with the default subset (listeners) or
// named in its domains (virtual hosts); if that is still not one hostname its
// VIPs are dropped with a warning. A VirtualService that sends host A's
// traffic to host B therefore gives A's VIP to B: the VIP's connections go to
// B's endpoints, which is what the datapath needs.
//
// # Determinism and incrementality
//
// Ports are sorted by port, VIPs by parsed address, endpoints by parsed
// address then port; the same input gives byte-identical values and content
// hashes whatever the map iteration order. Translate does a full pass; an
// Index keeps reverse indexes so that a change to a few resources costs the
// translation of the few services they touch, and translates each of them
// with the same per-service function as Translate.
package translate

package translate

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// claims maps a hostname to the VIPs that one listener or one route
// configuration gives it, in the order the resource lists them.
type claims map[string][]netip.Addr

func (c claims) add(host string, vip netip.Addr) {
	c[host] = append(c[host], vip)
}

// tcpProxyType is the type URL of the tcp_proxy network filter's config.
const tcpProxyType = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"

// listenerClaims returns the VIP a listener named <ip>_<port> gives the
// hostname its tcp_proxy filters route to, plus warnings.
func listenerClaims(name string, l *listenerv3.Listener) (claims, []string) {
	vip, port, ok := parseListenerName(name)
	if !ok || l == nil {
		return nil, nil
	}
	var dests []clusterName
	for _, fc := range filterChains(l) {
		for _, f := range fc.GetFilters() {
			if f.GetTypedConfig().GetTypeUrl() != tcpProxyType {
				continue
			}
			tp := &tcpproxyv3.TcpProxy{}
			if err := anypb.UnmarshalTo(f.GetTypedConfig(), tp, proto.UnmarshalOptions{}); err != nil {
				return nil, []string{fmt.Sprintf("listener %s: tcp_proxy: %v", name, err)}
			}
			dests = appendDest(dests, tp.GetCluster())
			for _, wc := range tp.GetWeightedClusters().GetClusters() {
				dests = appendDest(dests, wc.GetName())
			}
		}
	}
	host, ok := owner(dests, func(d clusterName) bool { return d.port == port && d.subset == "" })
	if !ok {
		return nil, []string{fmt.Sprintf("listener %s: routes to several hostnames, VIP dropped", name)}
	}
	if host == "" {
		return nil, nil
	}
	return claims{host: {vip}}, nil
}

// filterChains returns a listener's filter chains and its default chain.
func filterChains(l *listenerv3.Listener) []*listenerv3.FilterChain {
	chains := l.GetFilterChains()
	if dc := l.GetDefaultFilterChain(); dc != nil {
		chains = append(slices.Clip(chains), dc)
	}
	return chains
}

// parseListenerName parses <ip>_<port> with a specific (not unspecified) IP;
// an IPv6 address may be bracketed.
func parseListenerName(name string) (netip.Addr, uint32, bool) {
	i := strings.LastIndexByte(name, '_')
	if i < 0 {
		return netip.Addr{}, 0, false
	}
	port, err := strconv.ParseUint(name[i+1:], 10, 16)
	if err != nil || port == 0 {
		return netip.Addr{}, 0, false
	}
	ip := strings.TrimSuffix(strings.TrimPrefix(name[:i], "["), "]")
	addr, err := netip.ParseAddr(ip)
	if err != nil || addr.Zone() != "" || addr.IsUnspecified() {
		return netip.Addr{}, 0, false
	}
	return addr, uint32(port), true
}

// appendDest appends the parsed outbound cluster name, if it is one.
func appendDest(dests []clusterName, cluster string) []clusterName {
	if cn, ok := parseClusterName(cluster); ok {
		dests = append(dests, cn)
	}
	return dests
}

// owner picks the one hostname dests route to: the only hostname, else the
// only hostname among the dests preferred says. ok is false when that is
// still ambiguous; host is "" when there are no dests.
func owner(dests []clusterName, preferred func(clusterName) bool) (host string, ok bool) {
	if h, n := distinctHost(dests, nil); n <= 1 {
		return h, true
	}
	if h, n := distinctHost(dests, preferred); n == 1 {
		return h, true
	}
	return "", false
}

// distinctHost returns one of the hostnames of the dests keep accepts (all
// when keep is nil) and how many distinct ones there are, counting to 2.
func distinctHost(dests []clusterName, keep func(clusterName) bool) (string, int) {
	host, n := "", 0
	for _, d := range dests {
		if keep != nil && !keep(d) {
			continue
		}
		switch {
		case n == 0:
			host, n = d.host, 1
		case d.host != host:
			return host, 2
		}
	}
	return host, n
}

// routeClaims returns the VIPs the virtual hosts of a route configuration
// give to the hostnames they route to, plus warnings.
func routeClaims(name string, rc *routev3.RouteConfiguration) (claims, []string) {
	var out claims
	var warnings []string
	var dests []clusterName
	for _, vh := range rc.GetVirtualHosts() {
		var vips []netip.Addr
		for _, d := range vh.GetDomains() {
			if ip, ok := ipDomain(d); ok {
				vips = append(vips, ip)
			}
		}
		if len(vips) == 0 {
			continue
		}
		dests = dests[:0]
		for _, r := range vh.GetRoutes() {
			ra := r.GetRoute()
			dests = appendDest(dests, ra.GetCluster())
			for _, wc := range ra.GetWeightedClusters().GetClusters() {
				dests = appendDest(dests, wc.GetName())
			}
		}
		host, ok := owner(dests, func(d clusterName) bool { return namesHost(vh.GetDomains(), d.host) })
		if !ok {
			warnings = append(warnings, fmt.Sprintf("route %s: virtual host %q routes to several hostnames, VIPs dropped", name, vh.GetName()))
			continue
		}
		if host == "" {
			continue
		}
		if out == nil {
			out = claims{}
		}
		for _, ip := range vips {
			out.add(host, ip)
		}
	}
	return out, warnings
}

// ipDomain parses a virtual host domain that is an IP literal: "ip",
// "ip:port", "[ipv6]" or "[ipv6]:port". Unspecified addresses do not count.
func ipDomain(d string) (netip.Addr, bool) {
	addr, err := netip.ParseAddr(d)
	if err != nil {
		if ap, err2 := netip.ParseAddrPort(d); err2 == nil {
			addr, err = ap.Addr(), nil
		} else if inner, ok := strings.CutPrefix(d, "["); ok && strings.HasSuffix(inner, "]") {
			addr, err = netip.ParseAddr(strings.TrimSuffix(inner, "]"))
		}
	}
	if err != nil || addr.Zone() != "" || addr.IsUnspecified() {
		return netip.Addr{}, false
	}
	return addr, true
}

// namesHost reports whether domains list host, with or without ":port".
func namesHost(domains []string, host string) bool {
	for _, d := range domains {
		if rest, ok := strings.CutPrefix(d, host); ok && (rest == "" || rest[0] == ':') {
			return true
		}
	}
	return false
}

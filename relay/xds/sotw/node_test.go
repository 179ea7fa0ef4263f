package sotw

import (
	"strings"
	"testing"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestNodeFromEnvDefaults(t *testing.T) {
	n := NodeFromEnv(env(nil), "")
	if want := "sidecar~127.0.0.1~meshrelay-relay.istio-system~istio-system.svc.cluster.local"; n.GetId() != want {
		t.Errorf("id = %q, want %q", n.GetId(), want)
	}
	md := n.GetMetadata().GetFields()
	for k, want := range map[string]string{"NAMESPACE": "istio-system", "CLUSTER_ID": "Kubernetes", "ISTIO_VERSION": DefaultIstioVersion} {
		if got := md[k].GetStringValue(); got != want {
			t.Errorf("metadata %s = %q, want %q", k, got, want)
		}
	}
	if md["LABELS"].GetStructValue() == nil {
		t.Error("metadata LABELS is not a struct")
	}
	if _, ok := md["SERVICE_ACCOUNT"]; ok {
		t.Error("SERVICE_ACCOUNT set without the variable")
	}
	if err := ValidateNode(n); err != nil {
		t.Error(err)
	}
}

func TestNodeFromEnv(t *testing.T) {
	n := NodeFromEnv(env(map[string]string{
		"POD_IP": "127.0.0.5", "POD_NAME": "relay-0", "POD_NAMESPACE": "mesh", "ISTIO_VERSION": "1.27.1", "SERVICE_ACCOUNT": "relay",
	}), "east")
	if want := "sidecar~127.0.0.5~relay-0.mesh~mesh.svc.cluster.local"; n.GetId() != want {
		t.Errorf("id = %q, want %q", n.GetId(), want)
	}
	md := n.GetMetadata().GetFields()
	for k, want := range map[string]string{"NAMESPACE": "mesh", "CLUSTER_ID": "east", "ISTIO_VERSION": "1.27.1", "SERVICE_ACCOUNT": "relay"} {
		if got := md[k].GetStringValue(); got != want {
			t.Errorf("metadata %s = %q, want %q", k, got, want)
		}
	}
}

func TestValidateNode(t *testing.T) {
	bad := NodeFromEnv(env(map[string]string{"POD_IP": "relay-0"}), "")
	if err := ValidateNode(bad); err == nil || !strings.Contains(err.Error(), "not an IP") {
		t.Errorf("ValidateNode(POD_IP=relay-0) = %v, want an IP error", err)
	}
	if _, err := New(Options{Address: "127.0.0.1:1", Node: bad}, HandlerFunc(nil)); err == nil {
		t.Error("New accepted a node id without an IP")
	}
	for _, id := range []string{"", "sidecar~127.0.0.1~pod~x", "~127.0.0.1~a.b~b.svc", "sidecar~300.0.0.1~a.b~b.svc", "sidecar~127.0.0.1~a.b~"} {
		bad.Id = id
		if ValidateNode(bad) == nil {
			t.Errorf("ValidateNode accepted %q", id)
		}
	}
}

func TestNodeOverrides(t *testing.T) {
	node := NodeFromEnv(env(nil), "")
	c, err := New(Options{
		Address:      "127.0.0.1:1",
		Node:         node,
		NodeID:       "router~127.0.0.6~gw.ns~ns.svc.cluster.local",
		NodeMetadata: map[string]any{"NAMESPACE": "ns", "EXTRA": true},
	}, HandlerFunc(nil))
	if err != nil {
		t.Fatal(err)
	}
	if c.node.GetId() != "router~127.0.0.6~gw.ns~ns.svc.cluster.local" {
		t.Errorf("id = %q", c.node.GetId())
	}
	md := c.node.GetMetadata().GetFields()
	if md["NAMESPACE"].GetStringValue() != "ns" || !md["EXTRA"].GetBoolValue() || md["CLUSTER_ID"].GetStringValue() != "Kubernetes" {
		t.Errorf("metadata = %v", md)
	}
	if node.GetMetadata().GetFields()["NAMESPACE"].GetStringValue() != "istio-system" {
		t.Error("New modified the caller's node")
	}
	if _, err := New(Options{Address: "127.0.0.1:1", Node: node, NodeMetadata: map[string]any{"BAD": make(chan int)}}, HandlerFunc(nil)); err == nil {
		t.Error("New accepted metadata that is not a structpb value")
	}
}

package charttest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
)

const (
	chartDir     = "../helm/meshrelay"
	manifestsDir = "../kubernetes"
	release      = "mr"
	namespace    = "meshrelay-test"
)

// profile is one set of values the chart is rendered with, and what the
// checks expect of it.
type profile struct {
	name       string
	valueFiles []string
	// legacyKernel: the agent also gets SYS_ADMIN and IPC_LOCK.
	legacyKernel   bool
	perfmon        bool
	passwordAuth   bool
	etcdReplicas   int32
	serviceMonitor bool
	pprof          bool
	staticEtcd     bool
	tlsCreated     bool
}

var profiles = []profile{
	{name: "default", etcdReplicas: 3},
	{name: "custom", valueFiles: []string{"testdata/values-custom.yaml"}, legacyKernel: true, perfmon: true, passwordAuth: true,
		etcdReplicas: 1, serviceMonitor: true, pprof: true, staticEtcd: true, tlsCreated: true},
}

func render(t *testing.T, p profile) []Decoded {
	t.Helper()
	ms, err := Render(RenderOptions{ChartDir: chartDir, ReleaseName: release, Namespace: namespace, ValueFiles: p.valueFiles})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Decode(ms)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func TestLint(t *testing.T) {
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			vals, err := RenderOptions{ValueFiles: p.valueFiles}.Values()
			if err != nil {
				t.Fatal(err)
			}
			kv, err := chartutil.ParseKubeVersion(KubeVersion)
			if err != nil {
				t.Fatal(err)
			}
			l := lint.AllWithKubeVersion(chartDir, vals, namespace, kv)
			for _, m := range l.Messages {
				// INFO is advice (e.g. "icon is recommended"); warnings and errors fail.
				if m.Severity > support.InfoSev {
					t.Errorf("lint: %s", m)
				}
			}
		})
	}
}

// TestDecodeStrict also proves strict decoding works: an unknown field in
// an otherwise valid document must be refused.
func TestDecodeStrict(t *testing.T) {
	bad := Manifest{Source: "x.yaml", Content: "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: a}\nautomountServiceAccountTokens: false\n"}
	if _, err := Decode([]Manifest{bad}); err == nil || !strings.Contains(err.Error(), "automountServiceAccountTokens") {
		t.Fatalf("unknown field accepted or wrong error: %v", err)
	}
	unknown := Manifest{Source: "x.yaml", Content: "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n"}
	if _, err := Decode([]Manifest{unknown}); err == nil {
		t.Fatal("a kind the chart should not render was accepted")
	}
}

func TestRenderRefusesBadValues(t *testing.T) {
	for _, set := range []string{"etcd.authMode=none", "etcd.replicas=0", "nodeagent.etcdDiscovery=dns",
		"nodeagent.etcdDiscovery=static", "tls.create=true"} {
		_, err := Render(RenderOptions{ChartDir: chartDir, ReleaseName: release, Namespace: namespace, Set: []string{set}})
		if err == nil {
			t.Errorf("--set %s rendered without error", set)
		}
	}
}

func TestObjects(t *testing.T) {
	for _, p := range profiles {
		t.Run(p.name, func(t *testing.T) {
			objs := render(t, p)
			checkMetadata(t, objs)
			checkReferences(t, p, objs)
			var sts *appsv1.StatefulSet
			var dep *appsv1.Deployment
			var ds *appsv1.DaemonSet
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.TypeMeta.Kind]++
				switch v := o.Obj.(type) {
				case *appsv1.StatefulSet:
					sts = v
				case *appsv1.Deployment:
					dep = v
				case *appsv1.DaemonSet:
					ds = v
				case *corev1.ServiceAccount:
					if v.AutomountServiceAccountToken == nil || *v.AutomountServiceAccountToken {
						t.Errorf("ServiceAccount %s automounts its token", v.Name)
					}
				case *rbacv1.Role:
					checkRole(t, v)
				}
			}
			if sts == nil || dep == nil || ds == nil {
				t.Fatalf("missing workloads: statefulset %v deployment %v daemonset %v", sts != nil, dep != nil, ds != nil)
			}
			if got, want := kinds["ServiceMonitor"], map[bool]int{true: 3}[p.serviceMonitor]; got != want {
				t.Errorf("%d ServiceMonitors, want %d", got, want)
			}
			if kinds["NetworkPolicy"] != 3 {
				t.Errorf("%d NetworkPolicies, want 3 (etcd, relay, nodeagent)", kinds["NetworkPolicy"])
			}
			for _, w := range []struct {
				component string
				spec      corev1.PodSpec
			}{{"etcd", sts.Spec.Template.Spec}, {"relay", dep.Spec.Template.Spec}, {"nodeagent", ds.Spec.Template.Spec}} {
				checkPodSpec(t, p, w.component, w.spec)
			}
			checkEtcd(t, p, sts)
			checkRelay(t, p, dep)
			checkAgent(t, p, ds)
			checkEtcdPolicy(t, objs)
		})
	}
}

// checkMetadata: every object is namespaced into the release namespace and
// carries the recommended labels.
func checkMetadata(t *testing.T, objs []Decoded) {
	t.Helper()
	for _, o := range objs {
		id := o.TypeMeta.Kind + "/" + o.Meta.Name
		if o.Meta.Namespace != namespace {
			t.Errorf("%s: namespace %q, want %q", id, o.Meta.Namespace, namespace)
		}
		for _, k := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/component",
			"app.kubernetes.io/managed-by", "app.kubernetes.io/version", "helm.sh/chart"} {
			if o.Meta.Labels[k] == "" {
				t.Errorf("%s: no label %s", id, k)
			}
		}
		if o.Meta.Labels["app.kubernetes.io/instance"] != release {
			t.Errorf("%s: instance label %q", id, o.Meta.Labels["app.kubernetes.io/instance"])
		}
	}
}

// checkReferences: the Secrets and ConfigMaps pods mount exist in the
// render, or are the documented ones the user or Istio provides.
func checkReferences(t *testing.T, p profile, objs []Decoded) {
	t.Helper()
	rendered := map[string]bool{}
	for _, o := range objs {
		rendered[o.TypeMeta.Kind+"/"+o.Meta.Name] = true
	}
	external := map[string]bool{"ConfigMap/istio-ca-root-cert": true, "ConfigMap/kube-root-ca.crt": true}
	if !p.tlsCreated {
		for _, r := range []string{"server", "peer", "relay", "agent", "root"} {
			external["Secret/"+release+"-meshrelay-etcd-"+r] = true
		}
	}
	for _, o := range objs {
		spec := podSpec(o.Obj)
		if spec == nil {
			continue
		}
		for _, v := range spec.Volumes {
			var refs []string
			if v.Secret != nil {
				refs = append(refs, "Secret/"+v.Secret.SecretName)
			}
			if v.ConfigMap != nil {
				refs = append(refs, "ConfigMap/"+v.ConfigMap.Name)
			}
			if v.Projected != nil {
				for _, s := range v.Projected.Sources {
					if s.ConfigMap != nil {
						refs = append(refs, "ConfigMap/"+s.ConfigMap.Name)
					}
				}
			}
			for _, r := range refs {
				if !rendered[r] && !external[r] {
					t.Errorf("%s %s: volume %s refers to %s, neither rendered nor documented", o.TypeMeta.Kind, o.Meta.Name, v.Name, r)
				}
			}
		}
		if !rendered["ServiceAccount/"+spec.ServiceAccountName] {
			t.Errorf("%s %s: service account %q not rendered", o.TypeMeta.Kind, o.Meta.Name, spec.ServiceAccountName)
		}
	}
}

func podSpec(obj any) *corev1.PodSpec {
	switch v := obj.(type) {
	case *appsv1.StatefulSet:
		return &v.Spec.Template.Spec
	case *appsv1.Deployment:
		return &v.Spec.Template.Spec
	case *appsv1.DaemonSet:
		return &v.Spec.Template.Spec
	}
	return nil
}

// agentCaps are the capabilities the node agent may have; see the chart's
// README, "Node agent capabilities".
func agentCaps(p profile) []corev1.Capability {
	caps := []corev1.Capability{"BPF", "NET_ADMIN"}
	if p.perfmon {
		caps = append(caps, "PERFMON")
	}
	if p.legacyKernel {
		caps = append(caps, "SYS_ADMIN", "IPC_LOCK")
	}
	return caps
}

// checkPodSpec: security, resources, probes and mounts of every container.
func checkPodSpec(t *testing.T, p profile, component string, spec corev1.PodSpec) {
	t.Helper()
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Errorf("%s: host namespaces used (network %v, pid %v, ipc %v)", component, spec.HostNetwork, spec.HostPID, spec.HostIPC)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("%s: pod automounts a service-account token", component)
	}
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
		if v.HostPath != nil && component != "nodeagent" {
			t.Errorf("%s: hostPath volume %s", component, v.Name)
		}
	}
	if len(spec.InitContainers) > 0 {
		t.Errorf("%s: unexpected init containers", component)
	}
	for _, c := range spec.Containers {
		id := component + "/" + c.Name
		sc := c.SecurityContext
		if sc == nil {
			t.Errorf("%s: no securityContext", id)
			continue
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("%s: privileged", id)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("%s: writable root filesystem", id)
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s: capabilities not dropped: %+v", id, sc.Capabilities)
			continue
		}
		var wantAdd []corev1.Capability
		if id == "nodeagent/nodeagent" {
			wantAdd = agentCaps(p)
		}
		if !slices.Equal(sc.Capabilities.Add, wantAdd) {
			t.Errorf("%s: capabilities added %v, want %v", id, sc.Capabilities.Add, wantAdd)
		}
		// The API server refuses allowPrivilegeEscalation=false with
		// CAP_SYS_ADMIN; otherwise it must be false.
		hasSysAdmin := slices.Contains(sc.Capabilities.Add, "SYS_ADMIN")
		switch ape := sc.AllowPrivilegeEscalation; {
		case hasSysAdmin && ape != nil && !*ape:
			t.Errorf("%s: allowPrivilegeEscalation=false with SYS_ADMIN is invalid", id)
		case !hasSysAdmin && (ape == nil || *ape):
			t.Errorf("%s: privilege escalation allowed", id)
		}
		if id != "nodeagent/nodeagent" && (sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot) {
			t.Errorf("%s: may run as root", id)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("%s: resources %+v lack a CPU or memory request or a memory limit", id, c.Resources)
		}
		for _, m := range c.VolumeMounts {
			v, ok := volumes[m.Name]
			if !ok {
				t.Errorf("%s: mount %s has no volume", id, m.Name)
				continue
			}
			if m.MountPropagation != nil && *m.MountPropagation == corev1.MountPropagationBidirectional {
				t.Errorf("%s: Bidirectional mount propagation needs a privileged container", id)
			}
			if (v.Secret != nil || v.ConfigMap != nil || v.Projected != nil) && !m.ReadOnly {
				t.Errorf("%s: %s mounted writable", id, m.Name)
			}
		}
		if c.Name == "etcd-init" {
			continue // a one-shot-then-periodic reconciler with no server
		}
		ports := map[string]bool{}
		for _, cp := range c.Ports {
			ports[cp.Name] = true
		}
		wantLive, wantReady := "/healthz", "/readyz"
		if component == "etcd" {
			wantLive = "/livez"
		}
		for _, pr := range []struct {
			kind, path string
			probe      *corev1.Probe
		}{{"liveness", wantLive, c.LivenessProbe}, {"readiness", wantReady, c.ReadinessProbe}, {"startup", wantLive, c.StartupProbe}} {
			switch {
			case pr.probe == nil || pr.probe.HTTPGet == nil:
				t.Errorf("%s: no HTTP %s probe", id, pr.kind)
			case pr.probe.HTTPGet.Path != pr.path:
				t.Errorf("%s: %s probe on %s, want %s", id, pr.kind, pr.probe.HTTPGet.Path, pr.path)
			case !ports[pr.probe.HTTPGet.Port.String()]:
				t.Errorf("%s: %s probe port %s is not a named container port", id, pr.kind, pr.probe.HTTPGet.Port.String())
			}
		}
	}
}

func args(c corev1.Container) string {
	return strings.Join(append(append([]string{}, c.Command...), c.Args...), "\n")
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

func wantArgs(t *testing.T, id, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s: no %q in\n%s", id, w, got)
		}
	}
}

// checkEtcdGC checks etcd's Go garbage collector settings: unset by
// default; with the custom values, GOGC set and the GOMEMLIMIT soft limit
// below the container's memory limit minus its in-memory data volume,
// which counts against the same limit.
func checkEtcdGC(t *testing.T, p profile, c corev1.Container, data *corev1.Volume) {
	t.Helper()
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if p.name != "custom" {
		if _, ok := env["GOGC"]; ok {
			t.Errorf("etcd: GOGC %q set by default", env["GOGC"])
		}
		if _, ok := env["GOMEMLIMIT"]; ok {
			t.Errorf("etcd: GOMEMLIMIT %q set by default", env["GOMEMLIMIT"])
		}
		return
	}
	if env["GOGC"] != "400" {
		t.Errorf("etcd: GOGC %q, want the custom values' 400", env["GOGC"])
	}
	limit, ok := c.Resources.Limits[corev1.ResourceMemory]
	if env["GOMEMLIMIT"] == "" || !ok || data == nil || data.EmptyDir == nil || data.EmptyDir.SizeLimit == nil {
		t.Errorf("etcd: GOMEMLIMIT %q with memory limit %v and data volume %+v", env["GOMEMLIMIT"], limit, data)
		return
	}
	var n int64
	var unit string
	if _, err := fmt.Sscanf(env["GOMEMLIMIT"], "%d%s", &n, &unit); err != nil {
		t.Fatalf("etcd: GOMEMLIMIT %q: %v", env["GOMEMLIMIT"], err)
	}
	shift := map[string]uint{"B": 0, "KiB": 10, "MiB": 20, "GiB": 30}
	sh, known := shift[unit]
	if !known {
		t.Fatalf("etcd: GOMEMLIMIT %q: unit %q", env["GOMEMLIMIT"], unit)
	}
	if room := limit.Value() - data.EmptyDir.SizeLimit.Value(); n<<sh >= room {
		t.Errorf("etcd: GOMEMLIMIT %s is not below the memory limit %s minus the data volume's %s", env["GOMEMLIMIT"], limit.String(), data.EmptyDir.SizeLimit.String())
	}
}

func checkEtcd(t *testing.T, p profile, sts *appsv1.StatefulSet) {
	t.Helper()
	if *sts.Spec.Replicas != p.etcdReplicas {
		t.Errorf("etcd replicas %d, want %d", *sts.Spec.Replicas, p.etcdReplicas)
	}
	var data *corev1.Volume
	for i, v := range sts.Spec.Template.Spec.Volumes {
		if v.Name == "data" {
			data = &sts.Spec.Template.Spec.Volumes[i]
		}
	}
	if data == nil || data.EmptyDir == nil || data.EmptyDir.Medium != corev1.StorageMediumMemory || data.EmptyDir.SizeLimit == nil {
		t.Errorf("etcd data volume is not a size-limited in-memory emptyDir: %+v", data)
	}
	checkEtcdGC(t, p, container(t, sts.Spec.Template.Spec, "etcd"), data)
	etcd := args(container(t, sts.Spec.Template.Spec, "etcd"))
	wantArgs(t, "etcd", etcd, "--client-cert-auth", "--peer-client-cert-auth", "--trusted-ca-file=", "--peer-trusted-ca-file=",
		"--listen-client-urls=https://", "--listen-peer-urls=https://", "--auto-compaction-mode=", "--quota-backend-bytes=",
		"--advertise-client-urls=\"https://${POD_IP}:2379\"")
	if strings.Contains(etcd, "http://0.0.0.0:2379") || strings.Contains(etcd, "http://0.0.0.0:2380") {
		t.Error("etcd serves clients or peers in plaintext")
	}
	// The request limit must fit the relay's largest transaction.
	maxTxn := relayMaxTxnBytes(t)
	var maxReq int64
	for _, line := range strings.Split(etcd, "\n") {
		line = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(line), "\\"))
		if v, ok := strings.CutPrefix(line, "--max-request-bytes="); ok {
			if _, err := fmt.Sscan(v, &maxReq); err != nil {
				t.Fatalf("--max-request-bytes=%s: %v", v, err)
			}
		}
	}
	if maxReq < maxTxn+maxTxn/4 {
		t.Errorf("--max-request-bytes=%d does not fit the relay's %d-byte transactions with framing room", maxReq, maxTxn)
	}
	init := args(container(t, sts.Spec.Template.Spec, "etcd-init"))
	wantArgs(t, "etcd-init", init, "etcd-init", "--root-password-file=", "--relay-password-file=", "--agent-password-file=",
		"--etcd-endpoints=https://127.0.0.1:2379", "--etcd-cert=/etc/etcd/root/tls.crt")
	if got := strings.Contains(init, "--publish-endpoints-configmap="); got == p.staticEtcd {
		t.Errorf("etcd-init publishes endpoints: %v, static discovery: %v", got, p.staticEtcd)
	}
}

func checkRelay(t *testing.T, p profile, dep *appsv1.Deployment) {
	t.Helper()
	spec := dep.Spec.Template.Spec
	if *dep.Spec.Replicas != 3 {
		t.Errorf("relay replicas %d, want 3", *dep.Spec.Replicas)
	}
	aa := spec.Affinity
	if aa == nil || aa.PodAntiAffinity == nil {
		t.Fatal("relay: no pod anti-affinity")
	}
	terms := aa.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	if p.name == "custom" {
		if len(aa.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
			t.Error("relay: custom values ask for preferred anti-affinity")
		}
	} else if len(terms) != 1 || terms[0].TopologyKey != "kubernetes.io/hostname" || terms[0].LabelSelector.MatchLabels["app.kubernetes.io/component"] != "relay" {
		t.Errorf("relay: anti-affinity terms %+v", terms)
	}
	c := container(t, spec, "relay")
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	for name, path := range map[string]string{"POD_IP": "status.podIP", "POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"} {
		if env[name] != path {
			t.Errorf("relay: %s from %q, want the downward API's %s", name, env[name], path)
		}
	}
	a := args(c)
	wantArgs(t, "relay", a, ":15012", "--istiod-ca=", "--istiod-token-file=/var/run/secrets/tokens/istio-token",
		"--metrics-listen=$(POD_IP):", fmt.Sprintf("--pprof=%v", p.pprof), "--etcd-ca=", "--etcd-endpoints=https://")
	if got := strings.Contains(a, "--etcd-username=meshrelay-relay"); got != p.passwordAuth {
		t.Errorf("relay: password auth flags %v, want %v", got, p.passwordAuth)
	}
	var audience string
	for _, v := range spec.Volumes {
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.ServiceAccountToken != nil {
					audience = s.ServiceAccountToken.Audience
				}
			}
		}
	}
	if audience != "istio-ca" {
		t.Errorf("relay: projected token audience %q, want istio-ca", audience)
	}
}

func checkAgent(t *testing.T, p profile, ds *appsv1.DaemonSet) {
	t.Helper()
	spec := ds.Spec.Template.Spec
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("nodeagent: priority class %q", spec.PriorityClassName)
	}
	if !slices.ContainsFunc(spec.Tolerations, func(tl corev1.Toleration) bool {
		return tl.Operator == corev1.TolerationOpExists && tl.Key == "" && tl.Effect == ""
	}) {
		t.Errorf("nodeagent: does not tolerate every taint: %+v", spec.Tolerations)
	}
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	want := map[string]string{"default": "10%", "custom": "2"}[p.name]
	if ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.String() != want {
		t.Errorf("nodeagent: rolling update %+v, want maxUnavailable %s", ru, want)
	}
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
			if v.HostPath.Type == nil || *v.HostPath.Type != corev1.HostPathDirectory {
				t.Errorf("nodeagent: hostPath %s may be created (bpffs and cgroup2 must already be mounted)", v.Name)
			}
		}
	}
	if len(hostPaths) != 2 || hostPaths["bpffs"] != "/sys/fs/bpf" || hostPaths["cgroup"] != "/sys/fs/cgroup" {
		t.Errorf("nodeagent: host paths %v, want only bpffs and the cgroup v2 root", hostPaths)
	}
	a := args(container(t, spec, "nodeagent"))
	wantArgs(t, "nodeagent", a, "--datapath=bpf", "--metrics-listen=$(POD_IP):", fmt.Sprintf("--pprof=%v", p.pprof),
		"--etcd-server-name="+release+"-meshrelay-etcd."+namespace+".svc", "--etcd-cert=/etc/meshrelay/etcd-tls/tls.crt")
	if p.staticEtcd {
		wantArgs(t, "nodeagent", a, "--etcd-endpoints=https://192.0.2.10:2379")
	} else {
		wantArgs(t, "nodeagent", a, "--etcd-endpoints-file=")
	}
	// The agent must never resolve etcd through the cluster DNS.
	if strings.Contains(a, ".svc:2379") {
		t.Error("nodeagent: etcd endpoints are DNS names resolved through the kube-dns VIP")
	}
	if got := strings.Contains(a, "--etcd-username=meshrelay-agent"); got != p.passwordAuth {
		t.Errorf("nodeagent: password auth flags %v, want %v", got, p.passwordAuth)
	}
}

// checkEtcdPolicy: only relays, agents and etcd's own pods reach 2379.
func checkEtcdPolicy(t *testing.T, objs []Decoded) {
	t.Helper()
	for _, o := range objs {
		np, ok := o.Obj.(*networkingv1.NetworkPolicy)
		if !ok || np.Spec.PodSelector.MatchLabels["app.kubernetes.io/component"] != "etcd" {
			continue
		}
		var clients []string
		for _, r := range np.Spec.Ingress {
			for _, port := range r.Ports {
				if port.Port.IntValue() != 2379 {
					continue
				}
				for _, from := range r.From {
					if from.PodSelector == nil || from.NamespaceSelector != nil || from.IPBlock != nil {
						t.Errorf("etcd policy: client peer %+v is not a pod of the release", from)
						continue
					}
					clients = append(clients, from.PodSelector.MatchLabels["app.kubernetes.io/component"])
				}
			}
		}
		slices.Sort(clients)
		if !slices.Equal(clients, []string{"etcd", "nodeagent", "relay"}) {
			t.Errorf("etcd policy lets %v reach the client port", clients)
		}
		return
	}
	t.Error("no NetworkPolicy selects etcd")
}

// checkRole: the only API right is updating the endpoints ConfigMap.
func checkRole(t *testing.T, r *rbacv1.Role) {
	t.Helper()
	for _, rule := range r.Rules {
		if len(rule.ResourceNames) != 1 || !slices.Equal(rule.Resources, []string{"configmaps"}) ||
			slices.ContainsFunc(rule.Verbs, func(v string) bool { return v != "get" && v != "update" && v != "patch" }) {
			t.Errorf("Role %s grants more than get/update of one ConfigMap: %+v", r.Name, rule)
		}
	}
}

// TestManifestsUpToDate fails when deploy/kubernetes differs from the
// chart rendered with its values file: run `make manifests`.
func TestManifestsUpToDate(t *testing.T) {
	files, err := ManifestFiles(chartDir, manifestsDir)
	if err != nil {
		t.Fatal(err)
	}
	ondisk, err := filepath.Glob(filepath.Join(manifestsDir, "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ondisk {
		if _, ok := files[filepath.Base(p)]; !ok && filepath.Base(p) != ManifestsValues {
			t.Errorf("%s is not generated from the chart: run make manifests", p)
		}
	}
	for name, want := range files {
		got, err := os.ReadFile(filepath.Join(manifestsDir, name))
		if err != nil || string(got) != want {
			t.Errorf("%s is stale (err %v): run make manifests", name, err)
		}
	}
	// And what is committed decodes strictly too.
	ms, err := Render(RenderOptions{ChartDir: chartDir, ReleaseName: ManifestsRelease, Namespace: ManifestsNamespace,
		ValueFiles: []string{filepath.Join(manifestsDir, ManifestsValues)}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(ms); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(files["meshrelay.yaml"], "kind: Secret") {
		t.Error("the committed manifests contain a Secret")
	}
}

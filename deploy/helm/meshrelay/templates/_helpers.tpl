{{/* Names, labels and shared snippets of the meshrelay chart. */}}

{{- define "meshrelay.fullname" -}}
{{- if contains "meshrelay" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-meshrelay" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* meshrelay.labels: labels of every object; call with (dict "ctx" $ "component" "relay"). */}}
{{- define "meshrelay.labels" -}}
{{ include "meshrelay.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version }}
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "meshrelay.selectorLabels" -}}
app.kubernetes.io/name: meshrelay
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "meshrelay.etcdName" -}}{{ include "meshrelay.fullname" . }}-etcd{{- end -}}
{{- define "meshrelay.relayName" -}}{{ include "meshrelay.fullname" . }}-relay{{- end -}}
{{- define "meshrelay.agentName" -}}{{ include "meshrelay.fullname" . }}-nodeagent{{- end -}}
{{- define "meshrelay.endpointsConfigMap" -}}{{ include "meshrelay.fullname" . }}-etcd-endpoints{{- end -}}

{{/* meshrelay.tlsSecret: the Secret of one TLS role; call with (dict "ctx" $ "role" "relay"). */}}
{{- define "meshrelay.tlsSecret" -}}
{{- $name := index .ctx.Values.tls.secrets .role -}}
{{- if $name -}}{{ $name }}{{- else -}}{{ include "meshrelay.etcdName" .ctx }}-{{ .role }}{{- end -}}
{{- end -}}

{{- define "meshrelay.passwordSecret" -}}
{{- if .Values.etcd.passwords.existingSecret -}}{{ .Values.etcd.passwords.existingSecret }}{{- else -}}{{ include "meshrelay.etcdName" . }}-passwords{{- end -}}
{{- end -}}

{{/* meshrelay.etcdServerName: the name every etcd serving certificate carries. */}}
{{- define "meshrelay.etcdServerName" -}}{{ include "meshrelay.etcdName" . }}.{{ .Release.Namespace }}.svc{{- end -}}

{{/* meshrelay.etcdDNSEndpoints: the members' client URLs by their stable DNS names. */}}
{{- define "meshrelay.etcdDNSEndpoints" -}}
{{- $name := include "meshrelay.etcdName" . -}}
{{- $urls := list -}}
{{- range $i := until (int .Values.etcd.replicas) -}}
{{- $urls = append $urls (printf "https://%s-%d.%s.%s.svc:2379" $name $i $name $.Release.Namespace) -}}
{{- end -}}
{{- join "," $urls -}}
{{- end -}}

{{- define "meshrelay.image" -}}
{{- $tag := .image.tag | default .ctx.Chart.AppVersion -}}
{{ .image.repository }}:{{ $tag }}
{{- end -}}

{{/* meshrelay.etcdClientArgs: TLS (and password) flags of an etcd client; call with (dict "ctx" $ "user" "relay"). */}}
{{- define "meshrelay.etcdClientArgs" -}}
- --etcd-ca=/etc/meshrelay/etcd-tls/ca.crt
- --etcd-cert=/etc/meshrelay/etcd-tls/tls.crt
- --etcd-key=/etc/meshrelay/etcd-tls/tls.key
{{- if eq .ctx.Values.etcd.authMode "password" }}
- --etcd-username=meshrelay-{{ .user }}
- --etcd-password-file=/etc/meshrelay/etcd-password/{{ .user }}
{{- end }}
{{- end -}}

{{/* meshrelay.etcdClientVolumes: the volumes meshrelay.etcdClientArgs reads; call with (dict "ctx" $ "user" "relay"). */}}
{{- define "meshrelay.etcdClientVolumes" -}}
- name: etcd-tls
  secret:
    secretName: {{ include "meshrelay.tlsSecret" (dict "ctx" .ctx "role" .user) }}
    defaultMode: 0400
{{- if eq .ctx.Values.etcd.authMode "password" }}
- name: etcd-password
  secret:
    secretName: {{ include "meshrelay.passwordSecret" .ctx }}
    defaultMode: 0400
    items:
      - {key: {{ .user }}, path: {{ .user }}}
{{- end }}
{{- end -}}

{{- define "meshrelay.etcdClientMounts" -}}
- {name: etcd-tls, mountPath: /etc/meshrelay/etcd-tls, readOnly: true}
{{- if eq .ctx.Values.etcd.authMode "password" }}
- {name: etcd-password, mountPath: /etc/meshrelay/etcd-password, readOnly: true}
{{- end }}
{{- end -}}

{{/* meshrelay.restrictedContainer: the security context of containers that need no capability. */}}
{{- define "meshrelay.restrictedContainer" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "meshrelay.validate" -}}
{{- if not (has .Values.etcd.authMode (list "cert" "password")) -}}
{{- fail "etcd.authMode must be cert or password" -}}
{{- end -}}
{{- if lt (int .Values.etcd.replicas) 1 -}}
{{- fail "etcd.replicas must be at least 1" -}}
{{- end -}}
{{- if not (has .Values.nodeagent.etcdDiscovery (list "configMap" "static")) -}}
{{- fail "nodeagent.etcdDiscovery must be configMap or static" -}}
{{- end -}}
{{- if and (eq .Values.nodeagent.etcdDiscovery "static") (not .Values.nodeagent.staticEtcdEndpoints) -}}
{{- fail "nodeagent.etcdDiscovery=static needs nodeagent.staticEtcdEndpoints" -}}
{{- end -}}
{{- if and .Values.tls.create (not .Values.tls.ca) -}}
{{- fail "tls.create needs tls.ca and tls.certs (make certs writes them)" -}}
{{- end -}}
{{- end -}}

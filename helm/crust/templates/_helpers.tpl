{{/* The release's base name, cut to what label values and DNS names allow. */}}
{{- define "crust.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "crust.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "crust.labels" -}}
{{ include "crust.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "crust.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* /etc/crust/config.toml. JSON arrays of strings are TOML arrays too. */}}
{{- define "crust.config" -}}
{{- $c := .Values.config -}}
# Written by the crust Helm chart (release {{ .Release.Name }}); `crustd config default` lists every key.
log_level = {{ $c.logLevel | quote }}
cgroup_driver = {{ $c.cgroupDriver | quote }}
runtime_handlers = {{ $c.runtimeHandlers | toJson }}
seccomp_default = {{ $c.seccompDefault | quote }}

[image]
max_concurrent_downloads = {{ $c.image.maxConcurrentDownloads | int }}
insecure_registries = {{ $c.image.insecureRegistries | toJson }}
pinned_images = {{ $c.image.pinnedImages | toJson }}
{{- if $c.image.credentialsSecret }}
credentials_file = "/etc/crust/credentials.json"
{{- end }}
{{- range $host, $r := $c.image.registries }}

[image.registries.{{ $host | quote }}]
mirrors = {{ $r.mirrors | default list | toJson }}
skip_upstream = {{ $r.skipUpstream | default false }}
skip_verify = {{ $r.skipVerify | default false }}
ca_file = {{ $r.caFile | default "" | quote }}
{{- end }}

[cni]
conf_dir = {{ $c.cni.confDir | quote }}
bin_dirs = {{ $c.cni.binDirs | toJson }}

[streaming]
address = {{ $c.streaming.address | quote }}
port = {{ $c.streaming.port | int }}

[telemetry]
metrics_address = {{ if .Values.metrics.enabled }}{{ printf "%s:%d" .Values.metrics.address (.Values.metrics.port | int) | quote }}{{ else }}""{{ end }}
otlp_endpoint = {{ .Values.otlp.endpoint | quote }}
otlp_protocol = {{ .Values.otlp.protocol | quote }}
sample_ratio = {{ .Values.otlp.sampleRatio | float64 | printf "%.4f" }}
{{- end -}}

{{- define "agenthub.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "agenthub.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "agenthub.selectorLabels" -}}
app.kubernetes.io/name: {{ include "agenthub.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "agenthub.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "agenthub.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "agenthub.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "agenthub.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* agenthub.toml: the [hub] section from the values, then `extraConfig`. */}}
{{- define "agenthub.config" -}}
[hub]
listen = "0.0.0.0:{{ .Values.containerPort }}"
workers = {{ .Values.workers | toJson }}
shutdown_grace_s = {{ .Values.shutdownGraceSeconds }}
{{- $hosts := list }}
{{- range .Values.ingress.hosts }}{{ $hosts = append $hosts .host }}{{ end }}
{{- if .Values.ingress.enabled }}
allowed_hosts = {{ concat $hosts .Values.allowedHosts | toJson }}
{{- else }}
allowed_hosts = {{ .Values.allowedHosts | toJson }}
{{- end }}
{{- if .Values.secrets.metricsToken.name }}

[metrics]
token = "env:AGENTHUB_METRICS_TOKEN"
{{- end }}
{{- with .Values.extraConfig }}

{{ . }}
{{- end }}
{{- end }}

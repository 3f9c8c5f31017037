{{/* The roles, each a Deployment running one `cost-ops` command. */}}
{{- define "llm-costops.roles" -}}
api worker sink
{{- end }}

{{- define "llm-costops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "llm-costops.fullname" -}}
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

{{/* (list . "worker") -> <fullname>-worker */}}
{{- define "llm-costops.componentName" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "llm-costops.fullname" $root | trunc 56 | trimSuffix "-") (index . 1) }}
{{- end }}

{{- define "llm-costops.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "llm-costops.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "llm-costops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-costops.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "llm-costops.componentLabels" -}}
{{- $root := index . 0 -}}
{{ include "llm-costops.labels" $root }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "llm-costops.componentSelectorLabels" -}}
{{- $root := index . 0 -}}
{{ include "llm-costops.selectorLabels" $root }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{- define "llm-costops.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llm-costops.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "llm-costops.secretName" -}}
{{- default (include "llm-costops.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* The Secret keys each role reads: least privilege, the worker needs none. */}}
{{- define "llm-costops.secretKeys" -}}
{{- $role := index . 1 }}
{{- if eq $role "api" }}COSTOPS_ADMIN_KEY JWT_SECRET DATABASE_URL CLICKHOUSE_URL
{{- else if eq $role "sink" }}CLICKHOUSE_URL
{{- end }}
{{- end }}

{{/*
Replicas of a Kafka consumer group beyond the partition count would stay idle (and, for the
worker, never become ready): refuse them rather than deploy them.
*/}}
{{- define "llm-costops.checkConsumerReplicas" -}}
{{- $root := index . 0 }}
{{- $role := index . 1 }}
{{- $cfg := index $root.Values $role }}
{{- $partitions := int $root.Values.kafka.partitions }}
{{- if gt (int $cfg.replicas) $partitions }}
{{- fail (printf "%s.replicas (%d) must not exceed kafka.partitions (%d)" $role (int $cfg.replicas) $partitions) }}
{{- end }}
{{- if and $cfg.autoscaling.enabled (gt (int $cfg.autoscaling.maxReplicas) $partitions) }}
{{- fail (printf "%s.autoscaling.maxReplicas (%d) must not exceed kafka.partitions (%d)" $role (int $cfg.autoscaling.maxReplicas) $partitions) }}
{{- end }}
{{- end }}

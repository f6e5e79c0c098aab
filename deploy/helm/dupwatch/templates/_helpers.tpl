{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "dupwatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: <release>-<chart> unless the release name already holds it. */}}
{{- define "dupwatch.fullname" -}}
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

{{- define "dupwatch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dupwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dupwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: worker
{{- end }}

{{- define "dupwatch.labels" -}}
helm.sh/chart: {{ include "dupwatch.chart" . }}
{{ include "dupwatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: dupwatch
{{- end }}

{{- define "dupwatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dupwatch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository[:tag][@digest]; tag defaults to appVersion. Argument: dict "image" <values> "default" <tag>. */}}
{{- define "dupwatch.imageRef" -}}
{{- if .image.digest }}
{{- printf "%s@%s" .image.repository .image.digest }}
{{- else }}
{{- printf "%s:%s" .image.repository (default .default .image.tag | toString) }}
{{- end }}
{{- end }}

{{- define "dupwatch.image" -}}
{{- include "dupwatch.imageRef" (dict "image" .Values.image "default" .Chart.AppVersion) }}
{{- end }}

{{/* The chart-managed Secret (only rendered when it holds something). */}}
{{- define "dupwatch.secretName" -}}
{{- printf "%s-secrets" (include "dupwatch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "dupwatch.kafkaSaslEnabled" -}}
{{- if .Values.kafka.sasl.mechanism }}true{{ end }}
{{- end }}

{{- define "dupwatch.kafkaSecretName" -}}
{{- default (include "dupwatch.secretName" .) .Values.kafka.sasl.existingSecret }}
{{- end }}

{{- define "dupwatch.milvusTokenEnabled" -}}
{{- if or .Values.milvus.token .Values.milvus.existingSecret }}true{{ end }}
{{- end }}

{{- define "dupwatch.milvusSecretName" -}}
{{- default (include "dupwatch.secretName" .) .Values.milvus.existingSecret }}
{{- end }}

{{/* Key of a webhook's secret inside the chart-managed Secret. */}}
{{- define "dupwatch.webhookKey" -}}
{{- printf "webhook-%s" . }}
{{- end }}

{{/* Does the chart need to render its own Secret? */}}
{{- define "dupwatch.needsSecret" -}}
{{- $need := false }}
{{- if and (include "dupwatch.kafkaSaslEnabled" .) (not .Values.kafka.sasl.existingSecret) }}{{ $need = true }}{{ end }}
{{- if and .Values.milvus.token (not .Values.milvus.existingSecret) }}{{ $need = true }}{{ end }}
{{- range .Values.webhooks }}{{ if not .existingSecret }}{{ $need = true }}{{ end }}{{ end }}
{{- if $need }}true{{ end }}
{{- end }}

{{- define "dupwatch.webhookSecretDir" -}}/var/run/secrets/dupwatch/webhooks{{- end }}
{{- define "dupwatch.configDir" -}}/etc/dupwatch{{- end }}

{{/*
Checks that fail rendering with a message that says what to change.
One consumer per partition: pods beyond the partition count sit idle on a GPU.
*/}}
{{/* Resources of the bundle-copying init container; ephemeral-storage defaults to the emptyDir's sizeLimit. */}}
{{- define "dupwatch.bundleCopyResources" -}}
{{- $image := .Values.model.bundle.image }}
{{- $res := deepCopy (default dict $image.copyResources) }}
{{- $requests := default dict $res.requests }}
{{- $limits := default dict $res.limits }}
{{- if not (hasKey $requests "ephemeral-storage") }}{{- $_ := set $requests "ephemeral-storage" $image.sizeLimit }}{{- end }}
{{- if not (hasKey $limits "ephemeral-storage") }}{{- $_ := set $limits "ephemeral-storage" $image.sizeLimit }}{{- end }}
{{- $_ := set $res "requests" $requests }}
{{- $_ := set $res "limits" $limits }}
{{- toYaml $res }}
{{- end }}

{{/* The smallest replica count the chart allows: replicaCount, or autoscaling.minReplicas with an autoscaler. */}}
{{- define "dupwatch.minReplicas" -}}
{{- if or .Values.autoscaling.keda.enabled .Values.autoscaling.hpa.enabled }}{{ int .Values.autoscaling.minReplicas }}{{ else }}{{ int .Values.replicaCount }}{{ end }}
{{- end }}

{{/* A PodDisruptionBudget that lets a drain evict every consumer is refused. */}}
{{- define "dupwatch.validatePdb" -}}
{{- $pdb := .Values.podDisruptionBudget }}
{{- if $pdb.enabled }}
{{- $min := int (include "dupwatch.minReplicas" .) }}
{{- $allowed := max 1 (sub $min 1) }}
{{- if hasKey $pdb "minAvailable" }}
{{- $raw := toString $pdb.minAvailable }}
{{- if and (ge $min 2) (or (eq $raw "0") (eq $raw "0%")) }}
{{- fail (printf "podDisruptionBudget.minAvailable=%s lets a drain evict all %d consumers; use at least 1" $raw $min) }}
{{- end }}
{{- else }}
{{- $raw := toString $pdb.maxUnavailable }}
{{- $evicted := 0 }}
{{- if hasSuffix "%" $raw }}
{{- $pct := int (trimSuffix "%" $raw) }}
{{- $evicted = div (add (mul $min $pct) 99) 100 }}
{{- else }}
{{- $evicted = int $raw }}
{{- end }}
{{- if gt $evicted $allowed }}
{{- fail (printf "podDisruptionBudget.maxUnavailable=%s lets a drain evict %d of the %d consumers (minimum replicas); at most %d keeps one consuming" $raw $evicted $min $allowed) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "dupwatch.validate" -}}
{{- include "dupwatch.validatePdb" . }}
{{- with .Values.networkPolicy }}
{{- if and .enabled (not (or .metrics.allowedNamespaces .metrics.allowedPodSelectors)) }}
{{- fail "networkPolicy.enabled needs networkPolicy.metrics.allowedNamespaces or allowedPodSelectors: otherwise nothing may scrape /metrics" }}
{{- end }}
{{- end }}
{{- $parts := int .Values.kafka.partitions }}
{{- $keda := .Values.autoscaling.keda.enabled }}
{{- $hpa := .Values.autoscaling.hpa.enabled }}
{{- if and $keda $hpa }}
{{- fail "autoscaling.keda.enabled and autoscaling.hpa.enabled are exclusive: KEDA creates its own HPA" }}
{{- end }}
{{- if or $keda $hpa }}
{{- $max := int .Values.autoscaling.maxReplicas }}
{{- if gt $max $parts }}
{{- fail (printf "autoscaling.maxReplicas (%d) exceeds kafka.partitions (%d): a consumer group cannot use more pods than the topic %q has partitions; add partitions or lower maxReplicas" $max $parts .Values.kafka.uploadsTopic) }}
{{- end }}
{{- if and $hpa (lt (int .Values.autoscaling.minReplicas) 1) }}
{{- fail "autoscaling.minReplicas=0 (scale to zero) needs KEDA; the plain HPA needs at least 1" }}
{{- end }}
{{- if gt (int .Values.autoscaling.minReplicas) $max }}
{{- fail (printf "autoscaling.minReplicas (%d) exceeds autoscaling.maxReplicas (%d)" (int .Values.autoscaling.minReplicas) $max) }}
{{- end }}
{{- else if gt (int .Values.replicaCount) $parts }}
{{- fail (printf "replicaCount (%d) exceeds kafka.partitions (%d): extra consumers of topic %q would sit idle" (int .Values.replicaCount) $parts .Values.kafka.uploadsTopic) }}
{{- end }}
{{- with .Values.kafka.sasl }}
{{- if and .mechanism (not .existingSecret) (or (not .username) (not .password)) }}
{{- fail "kafka.sasl.mechanism is set: give kafka.sasl.username and kafka.sasl.password, or kafka.sasl.existingSecret" }}
{{- end }}
{{- end }}
{{- $bundle := .Values.model.bundle }}
{{- if and (eq $bundle.source "pvc") (not $bundle.pvc.claimName) }}
{{- fail "model.bundle.source=pvc needs model.bundle.pvc.claimName" }}
{{- end }}
{{- range .Values.webhooks }}
{{- if and (not .secret) (not .existingSecret) }}
{{- fail (printf "webhook %q needs secret or existingSecret" .name) }}
{{- end }}
{{- end }}
{{- end }}

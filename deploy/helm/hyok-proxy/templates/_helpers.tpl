{{/* Full name of the release's objects. */}}
{{- define "hyok.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hyok.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "hyok.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hyok.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hyok.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "hyok.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "hyok.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{/*
The file Secrets the pod mounts, as YAML { items: [...] }: each with id (volume and directory name),
dir (mount path), name (Secret name), create (made by the chart) and data (when created).
*/}}
{{- define "hyok.secretSet" -}}
{{- $s := .Values.secrets -}}
{{- $full := include "hyok.fullname" . -}}
{{- $items := list -}}
{{- $items = append $items (dict "id" "sigv4" "existing" $s.sigv4.existingSecret "data" $s.sigv4.data) -}}
{{- $items = append $items (dict "id" "hsm-pins" "existing" $s.hsmPins.existingSecret "data" $s.hsmPins.data) -}}
{{- if and .Values.admin.enabled (or $s.admin.existingSecret $s.admin.data) -}}
{{- $items = append $items (dict "id" "admin" "existing" $s.admin.existingSecret "data" $s.admin.data) -}}
{{- end -}}
{{- if ne .Values.redis.mode "none" -}}
{{- $k := $s.decisionSigningKey -}}
{{- if not (or $k.existingSecret $k.value) -}}
{{- fail "secrets.decisionSigningKey: set value or existingSecret (redis.mode is not none)" -}}
{{- end -}}
{{- $items = append $items (dict "id" "decision-signing-key" "existing" $k.existingSecret "data" (dict $k.key $k.value)) -}}
{{- $p := $s.redisPassword -}}
{{- if or $p.existingSecret $p.value -}}
{{- $items = append $items (dict "id" "redis-password" "existing" $p.existingSecret "data" (dict $p.key $p.value)) -}}
{{- end -}}
{{- end -}}
{{- range $items -}}
{{- $_ := set . "dir" (printf "/etc/hyok-proxy/secrets/%s" .id) -}}
{{- $_ := set . "create" (not .existing) -}}
{{- $_ := set . "name" (default (printf "%s-%s" $full .id) .existing) -}}
{{- if .existing -}}{{- $_ := set . "data" (dict) -}}{{- end -}}
{{- end -}}
{{- toYaml (dict "items" $items) -}}
{{- end -}}

{{/* The proxy configuration: the user's sections plus what the chart owns (listeners, TLS files, metrics, admin, Redis). */}}
{{- define "hyok.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $clientAuth := dict "mode" .Values.clientAuth.mode -}}
{{- if ne .Values.clientAuth.mode "off" -}}
{{- $_ := set $clientAuth "caFile" "/etc/hyok-proxy/tls/ca.crt" -}}
{{- $_ := set $clientAuth "allowedSubjects" (dict "commonNames" .Values.clientAuth.allowedCommonNames "dnsNames" .Values.clientAuth.allowedDnsNames) -}}
{{- end -}}
{{- $tls := dict "certFile" "/etc/hyok-proxy/tls/tls.crt" "keyFile" "/etc/hyok-proxy/tls/tls.key" "clientAuth" $clientAuth -}}
{{- $_ := set $config "server" (dict "host" "0.0.0.0" "port" (int .Values.ports.xks) "tls" $tls) -}}
{{- $_ := set $config "metrics" (dict "enabled" true "host" "0.0.0.0" "port" (int .Values.ports.metrics)) -}}
{{- if .Values.admin.enabled -}}
{{- $admin := merge (dict "enabled" true "host" "0.0.0.0" "port" (int .Values.ports.admin)) (deepCopy .Values.admin.auth) -}}
{{- $_ := set $config "admin" $admin -}}
{{- end -}}
{{- if .Values.policy -}}
{{- $_ := set $config "policy" (merge (dict "file" "/etc/hyok-proxy/policy.yaml") (default (dict) $config.policy)) -}}
{{- end -}}
{{- if ne .Values.redis.mode "none" -}}
{{- $s := .Values.secrets -}}
{{- $redis := dict "decisionSigningKey" (dict "file" (printf "/etc/hyok-proxy/secrets/decision-signing-key/%s" $s.decisionSigningKey.key)) "commandTimeoutMs" (int .Values.redis.commandTimeoutMs) "keyPrefix" .Values.redis.keyPrefix -}}
{{- if eq .Values.redis.mode "standalone" -}}
{{- $_ := set $redis "url" .Values.redis.url -}}
{{- else if eq .Values.redis.mode "sentinel" -}}
{{- $_ := set $redis "sentinel" (dict "sentinels" .Values.redis.sentinel.sentinels "masterName" .Values.redis.sentinel.masterName) -}}
{{- else -}}
{{- $_ := set $redis "cluster" (dict "nodes" .Values.redis.cluster.nodes) -}}
{{- end -}}
{{- if or $s.redisPassword.existingSecret $s.redisPassword.value -}}
{{- $_ := set $redis "password" (dict "file" (printf "/etc/hyok-proxy/secrets/redis-password/%s" $s.redisPassword.key)) -}}
{{- end -}}
{{- $_ := set $config "redis" $redis -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

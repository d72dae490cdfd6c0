{{- define "hyok.fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
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

{{- define "hyok.secretName" -}}
{{- default (printf "%s-files" (include "hyok.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "hyok.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "hyok.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{/* The proxy configuration: the user's sections plus what the chart owns (listeners, TLS files, metrics, Redis). */}}
{{- define "hyok.config" -}}
{{- $config := deepCopy .Values.config -}}
{{- $clientAuth := dict "mode" .Values.clientAuth.mode -}}
{{- if ne .Values.clientAuth.mode "off" -}}
{{- $_ := set $clientAuth "caFile" "/etc/hyok-proxy/tls/ca.crt" -}}
{{- $_ := set $clientAuth "allowedSubjects" (dict "commonNames" .Values.clientAuth.allowedCommonNames) -}}
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
{{- $redis := dict "decisionSigningKey" (dict "file" (printf "/etc/hyok-proxy/secrets/%s" .Values.redis.decisionSigningKeyFile)) -}}
{{- if eq .Values.redis.mode "standalone" -}}
{{- $_ := set $redis "url" .Values.redis.url -}}
{{- else if eq .Values.redis.mode "sentinel" -}}
{{- $_ := set $redis "sentinel" (dict "sentinels" .Values.redis.sentinel.sentinels "masterName" .Values.redis.sentinel.masterName) -}}
{{- else -}}
{{- $_ := set $redis "cluster" (dict "nodes" .Values.redis.cluster.nodes) -}}
{{- end -}}
{{- if .Values.redis.passwordFile -}}
{{- $_ := set $redis "password" (dict "file" (printf "/etc/hyok-proxy/secrets/%s" .Values.redis.passwordFile)) -}}
{{- end -}}
{{- $_ := set $config "redis" $redis -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

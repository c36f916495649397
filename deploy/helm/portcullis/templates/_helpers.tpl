{{/*
The chart's name, and the full name its objects take: the release name
alone when it already says portcullis, else <release>-portcullis, cut to the
63 characters a label value and a DNS name allow.
*/}}
{{- define "portcullis.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "portcullis.fullname" -}}
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

{{- define "portcullis.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "portcullis.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "portcullis.selectorLabels" -}}
app.kubernetes.io/name: {{ include "portcullis.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "portcullis.serviceAccountName" -}}
{{- default (include "portcullis.fullname" .) .Values.serviceAccount.name }}
{{- end }}

{{- define "portcullis.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret holding the TLS certificate, tls.crt and tls.key. */}}
{{- define "portcullis.tlsSecretName" -}}
{{- if .Values.tls.certManager.enabled }}
{{- printf "%s-tls" (include "portcullis.fullname" .) }}
{{- else }}
{{- .Values.tls.existingSecret }}
{{- end }}
{{- end }}

{{/* The Secret the chart generates COOKIE_SECRET and SHARED_SECRET into. */}}
{{- define "portcullis.generatedSecretName" -}}
{{- printf "%s-generated" (include "portcullis.fullname" .) }}
{{- end }}

{{/*
How the Kubernetes route reaches the cluster Portcullis runs in:
Portcullis's in-cluster mode, which finds the API server where client-go
does (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT), checks it
against the cluster CA Kubernetes mounts into every pod, and calls it as
the pod's own service account with the mounted token, read again when the
kubelet rotates it. values.schema.json refuses the keys in-cluster mode
sets itself (to, tls_custom_ca, the token) in kubernetesRoute.settings.
*/}}
{{- define "portcullis.kubernetesUpstream" -}}
kubernetes_in_cluster: true
{{- end }}

{{/* Where the pod finds its files. */}}
{{- define "portcullis.configDir" -}}/etc/portcullis/config{{- end }}
{{- define "portcullis.tlsDir" -}}/etc/portcullis/tls{{- end }}
{{- define "portcullis.secretsDir" -}}/etc/portcullis/secrets{{- end }}

{{/*
The audit policy of .Values.audit.policy as the file Portcullis reads, in
the ConfigMap beside the configuration file; apiVersion and kind may be
left out of the values. Empty without a policy.
*/}}
{{- define "portcullis.auditPolicy" -}}
{{- with .Values.audit.policy }}
{{- toYaml (merge (deepCopy .) (dict "apiVersion" "audit.k8s.io/v1" "kind" "Policy")) }}
{{- end }}
{{- end }}

{{/*
The directory of audit.logPath when it is a file: the pod's root file
system is read-only, so the chart mounts an emptyDir there. Empty for no
log file or "-", standard output.
*/}}
{{- define "portcullis.auditLogDir" -}}
{{- if and .Values.audit.logPath (ne .Values.audit.logPath "-") }}
{{- dir .Values.audit.logPath }}
{{- end }}
{{- end }}

{{/*
The Portcullis configuration file: what the values set, then the further
settings of .Values.config. Secrets are never in it, only the paths of the
files the Secrets are mounted as, since a ConfigMap is readable by anyone
who may read the namespace's configuration.
*/}}
{{- define "portcullis.config" -}}
{{- $upstream := include "portcullis.kubernetesUpstream" . | fromYaml }}
{{- range $key, $_ := .Values.kubernetesRoute.settings }}
{{- if or (hasKey $upstream $key) (has $key (list "from" "policy")) }}
{{- fail (printf "kubernetesRoute.settings.%s: the chart sets %s itself from the other values; remove it" $key $key) }}
{{- end }}
{{- end -}}
address: ":8443"
authenticate_service_url: https://{{ .Values.hosts.authenticate }}
{{- if .Values.insecureServer }}
insecure_server: true
{{- else }}
certificate_file: {{ include "portcullis.tlsDir" . }}/tls.crt
certificate_key_file: {{ include "portcullis.tlsDir" . }}/tls.key
{{- end }}
cookie_secret_file: {{ include "portcullis.secretsDir" . }}/cookie-secret
shared_secret_file: {{ include "portcullis.secretsDir" . }}/shared-secret
idp_provider: {{ .Values.idp.provider }}
{{- with .Values.idp.url }}
idp_provider_url: {{ . }}
{{- end }}
idp_client_id: {{ .Values.idp.clientId | quote }}
idp_client_secret_file: {{ include "portcullis.secretsDir" . }}/idp-client-secret
{{- if eq .Values.sessionStore.type "postgres" }}
databroker_storage_type: postgres
databroker_storage_connection_string_file: {{ include "portcullis.secretsDir" . }}/database-url
{{- end }}
{{- with .Values.sessionStore.grace }}
databroker_storage_grace: {{ . | quote }}
{{- end }}
{{- if .Values.metrics.enabled }}
metrics_address: ":{{ .Values.metrics.port }}"
{{- if .Values.metrics.adminToken.existingSecret }}
admin_token_file: {{ include "portcullis.secretsDir" . }}/admin-token
{{- end }}
{{- end }}
{{- with .Values.audit.logPath }}
audit_log_path: {{ . | quote }}
{{- end }}
{{- if include "portcullis.auditLogDir" . }}
audit_log_maxsize: {{ .Values.audit.logMaxSize }}
audit_log_maxbackup: {{ .Values.audit.logMaxBackup }}
{{- end }}
{{- if .Values.audit.policy }}
audit_policy_file: {{ include "portcullis.configDir" . }}/audit-policy.yaml
{{- end }}
{{- if .Values.audit.webhook.existingSecret }}
audit_webhook_config_file: {{ include "portcullis.secretsDir" . }}/audit-webhook.kubeconfig
{{- end }}
{{- with .Values.config }}
{{ toYaml . }}
{{- end }}
routes:
  - from: https://{{ .Values.hosts.kubernetes }}
    {{- include "portcullis.kubernetesUpstream" . | nindent 4 }}
    {{- with .Values.kubernetesRoute.settings }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with .Values.kubernetesRoute.policy }}
    policy:
      {{- toYaml . | nindent 6 }}
    {{- end }}
  {{- with .Values.routes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/*
The values behind the settings Portcullis cannot change without a restart
(listeners, the session store, the secrets' files, the audit trail, whose
policy Portcullis reads only at start, and whatever .Values.config holds):
the pods roll when they change. Routes, policies and the identity provider
are reloaded from the ConfigMap instead. The dashboard and the alerting
rules are not the pods' business.
*/}}
{{- define "portcullis.restartSettings" -}}
{{- toYaml (dict "hosts" .Values.hosts.authenticate "insecureServer" .Values.insecureServer
      "sessionStore" .Values.sessionStore "metrics" (omit .Values.metrics "grafanaDashboard" "prometheusRule")
      "config" .Values.config "secrets" .Values.secrets "audit" .Values.audit) }}
{{- end }}

{{/*
Checks across values that the schema cannot express, each failing with what
to change.
*/}}
{{- define "portcullis.validate" -}}
{{- if eq .Values.sessionStore.type "postgres" }}
{{- if not .Values.sessionStore.connectionString.existingSecret }}
{{- fail "sessionStore.connectionString.existingSecret: name the Secret that holds the PostgreSQL connection string, which sessionStore.type: postgres needs (see docs/postgres.md)" }}
{{- end }}
{{- else }}
{{- if gt (int .Values.replicaCount) 1 }}
{{- fail "replicaCount: several replicas must share their sessions, and sessionStore.type: memory keeps them in each pod; set sessionStore.type: postgres (see docs/postgres.md), or replicaCount: 1" }}
{{- end }}
{{- if .Values.sessionStore.connectionString.existingSecret }}
{{- fail "sessionStore.connectionString.existingSecret: is set, but sessionStore.type is memory; set sessionStore.type: postgres to keep sessions in that database, or remove it" }}
{{- end }}
{{- if .Values.sessionStore.grace }}
{{- fail "sessionStore.grace: is set, but sessionStore.type is memory, which has no database to wait for; set sessionStore.type: postgres, or remove it" }}
{{- end }}
{{- end }}
{{- if eq .Values.hosts.kubernetes .Values.hosts.authenticate }}
{{- fail "hosts: the sign-in service needs a host of its own; set hosts.authenticate and hosts.kubernetes to different names" }}
{{- end }}
{{- if and .Values.tls.certManager.enabled (not .Values.tls.certManager.issuerRef.name) }}
{{- fail "tls.certManager.issuerRef.name: name the cert-manager Issuer or ClusterIssuer that signs the certificate" }}
{{- end }}
{{- if not (or .Values.insecureServer .Values.tls.certManager.enabled .Values.tls.existingSecret) }}
{{- fail "tls: set tls.existingSecret to the kubernetes.io/tls Secret with the certificate, or enable tls.certManager" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.serviceMonitor.enabled: a ServiceMonitor needs the metrics listener; set metrics.enabled: true" }}
{{- end }}
{{- if and .Values.metrics.prometheusRule.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.prometheusRule.enabled: its alerts read the metrics listener's metrics; set metrics.enabled: true" }}
{{- end }}
{{- if and .Values.audit.policy (not (or .Values.audit.logPath .Values.audit.webhook.existingSecret)) }}
{{- fail "audit.policy: is set, but no audit event would be written; set audit.logPath (\"-\" for the pod's standard output) or audit.webhook.existingSecret" }}
{{- end }}
{{- with include "portcullis.auditLogDir" . }}
{{- if or (eq . "/") (eq . "/etc/portcullis") (hasPrefix "/etc/portcullis/" .) (hasPrefix "/var/run/secrets/" .) }}
{{- fail (printf "audit.logPath: the chart mounts an emptyDir at its directory, %s, which must not be / or hold the pod's own files; use a directory of its own, such as /var/log/portcullis, or \"-\" for the pod's standard output" .) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Names ------------------------------------------------------------------- */}}

{{- define "nico-flow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nico-flow.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A component's object name: <fullname>-<component>, within 63 characters. */}}
{{- define "nico-flow.component" -}}
{{- printf "%s-%s" (include "nico-flow.fullname" .root) .component | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nico-flow.operatorServiceAccount" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "nico-flow.component" (dict "root" . "component" "operator")) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "nico-flow.apiServiceAccount" -}}
{{- if .Values.api.serviceAccount.create -}}
{{- default (include "nico-flow.component" (dict "root" . "component" "api")) .Values.api.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.api.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels ------------------------------------------------------------------ */}}

{{- define "nico-flow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nico-flow.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of every object: call with (dict "root" $ "component" "operator"). */}}
{{- define "nico-flow.labels" -}}
{{ include "nico-flow.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: nico-flow
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Image ------------------------------------------------------------------- */}}

{{- define "nico-flow.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Security: the restricted Pod Security Standard ------------------------------ */}}

{{- define "nico-flow.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "nico-flow.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Environment shared by the operator, the API and the migration Job --------- */}}

{{- define "nico-flow.databaseEnv" -}}
{{- if .Values.database.bundled.enabled }}
- name: DB_HOST
  value: {{ include "nico-flow.component" (dict "root" . "component" "postgres") }}
- name: DB_PORT
  value: "5432"
- name: DB_USER
  value: {{ .Values.database.bundled.user | quote }}
- name: DB_NAME
  value: {{ .Values.database.bundled.database | quote }}
- name: DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "nico-flow.component" (dict "root" . "component" "postgres") }}
      key: password
{{- else }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "database.external.existingSecret is required (or enable database.bundled)" .Values.database.external.existingSecret }}
      key: {{ .Values.database.external.key }}
{{- end }}
{{- end -}}

{{- define "nico-flow.databaseVolumeMounts" -}}
{{- if and (not .Values.database.bundled.enabled) .Values.database.external.caSecret }}
- name: db-ca
  mountPath: /etc/nico-flow/db-ca
  readOnly: true
{{- end }}
{{- end -}}

{{- define "nico-flow.databaseVolumes" -}}
{{- if and (not .Values.database.bundled.enabled) .Values.database.external.caSecret }}
- name: db-ca
  secret:
    secretName: {{ .Values.database.external.caSecret }}
{{- end }}
{{- end -}}

{{- define "nico-flow.tlsEnv" -}}
{{- if .Values.tls.secretName }}
- name: CERTDIR
  value: {{ .Values.tls.certDir | quote }}
{{- else if .Values.tls.allowInsecure }}
{{- /* no CERTDIR without certificates: `flow serve` refuses a named directory that lacks them */}}
- name: ALLOW_INSECURE_GRPC
  value: "true"
{{- end }}
{{- end -}}

{{- define "nico-flow.tlsVolumeMounts" -}}
{{- if .Values.tls.secretName }}
- name: tls
  mountPath: {{ .Values.tls.certDir }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "nico-flow.tlsVolumes" -}}
{{- if .Values.tls.secretName }}
- name: tls
  secret:
    secretName: {{ .Values.tls.secretName }}
    items:
      - {key: ca.crt, path: ca.crt}
      - {key: tls.crt, path: tls.crt}
      - {key: tls.key, path: tls.key}
{{- end }}
{{- end -}}

{{/* The gRPC health check of the API, as argv (readiness with TLS, helm test). */}}
{{- define "nico-flow.grpcHealthCommand" -}}
- python
- /opt/nico-flow/scripts/health_probe.py
- {{ .target | quote }}
{{- if .root.Values.tls.secretName }}
- --cert-dir={{ .root.Values.tls.certDir }}
{{- with .serverName }}
- --server-name={{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Leak namespace: where the operator creates force_power_off TaskSpecs. */}}
{{- define "nico-flow.leakNamespace" -}}
{{- default .Release.Namespace .Values.operator.leakNamespace -}}
{{- end -}}

{{/* The name probes and `helm test` verify in the API's TLS certificate. */}}
{{- define "nico-flow.apiServerName" -}}
{{- default (printf "%s.%s.svc" (include "nico-flow.component" (dict "root" . "component" "api")) .Release.Namespace) .Values.tls.serverName -}}
{{- end -}}

{{/* The name of every object: "coldstart", as in deploy/base. */}}
{{- define "coldstart.fullname" -}}
{{- default "coldstart" .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object: kustomize's (name, part-of) and Helm's own. */}}
{{- define "coldstart.labels" -}}
app.kubernetes.io/name: coldstart
app.kubernetes.io/part-of: coldstart
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The pods' selector: the same as the kustomize base's, so either can take over. */}}
{{- define "coldstart.selectorLabels" -}}
app.kubernetes.io/name: coldstart
{{- end -}}

{{/* repository:tag, or repository:tag@digest when a digest pins it. */}}
{{- define "coldstart.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The ServiceAccount's annotations: the cloud's workload identity, then the user's. */}}
{{- define "coldstart.serviceAccountAnnotations" -}}
{{- $a := dict -}}
{{- if eq .Values.cloud.provider "aws" -}}
{{- $_ := set $a "eks.amazonaws.com/role-arn" .Values.cloud.aws.roleArn -}}
{{- else if eq .Values.cloud.provider "azure" -}}
{{- $_ := set $a "azure.workload.identity/client-id" .Values.cloud.azure.clientId -}}
{{- else if eq .Values.cloud.provider "gcp" -}}
{{- $_ := set $a "iam.gke.io/gcp-service-account" .Values.cloud.gcp.serviceAccount -}}
{{- end -}}
{{- $a = merge (deepCopy .Values.serviceAccount.annotations) $a -}}
{{- if $a }}
{{- toYaml $a }}
{{- end -}}
{{- end -}}

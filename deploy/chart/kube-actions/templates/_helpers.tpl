{{- define "kube-actions.labels" -}}
app.kubernetes.io/name: kube-actions
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: controller
{{- end -}}

{{- define "kube-actions.selector" -}}
app.kubernetes.io/name: kube-actions
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

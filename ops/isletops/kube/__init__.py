"""IsletNet on Kubernetes: the chart and plain manifests rendered from the compose source
(`source`: what compose says; `objects`: the Kubernetes objects; `chart`: Helm chart and
kustomize folder written from one object model)."""

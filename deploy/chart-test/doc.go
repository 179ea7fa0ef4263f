// Package charttest renders the meshrelay Helm chart (deploy/helm/meshrelay)
// without a cluster and decodes what it renders strictly into Kubernetes API
// types. Its tests lint the chart and check the security properties
// docs/operations.md and the chart's README promise; cmd/render writes
// deploy/kubernetes from it.
//
// It is a module of its own so that Helm and the Kubernetes API types stay
// out of the main module's build. Nothing else imports it.
package charttest

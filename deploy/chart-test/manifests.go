package charttest

import (
	"fmt"
	"os"
	"path/filepath"
)

// Manifests of deploy/kubernetes: the chart rendered with the values file
// kept next to them, so `kubectl apply -k deploy/kubernetes` and
// `helm install` come from one source.
const (
	ManifestsRelease   = "meshrelay"
	ManifestsNamespace = "meshrelay-system"
	// ManifestsValues is the values file inside the manifests directory.
	ManifestsValues = "values.yaml"
)

const generatedHeader = "# Generated from deploy/helm/meshrelay by `make manifests` with values.yaml; do not edit.\n"

// ManifestFiles returns the generated files of the manifests directory dir
// (name → content), rendered from chartDir with dir's values.yaml.
func ManifestFiles(chartDir, dir string) (map[string]string, error) {
	ms, err := Render(RenderOptions{
		ChartDir: chartDir, ReleaseName: ManifestsRelease, Namespace: ManifestsNamespace,
		ValueFiles: []string{filepath.Join(dir, ManifestsValues)},
	})
	if err != nil {
		return nil, err
	}
	return map[string]string{
		"meshrelay.yaml": generatedHeader + Join(ms),
		"namespace.yaml": generatedHeader + "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ManifestsNamespace + "\n",
		"kustomization.yaml": generatedHeader + "# kubectl apply -k deploy/kubernetes (after creating the TLS and password Secrets: docs/operations.md)\n" +
			"apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - namespace.yaml\n  - meshrelay.yaml\n",
	}, nil
}

// WriteManifests writes ManifestFiles into dir and removes the YAML files
// there that it does not generate (other than the values file).
func WriteManifests(chartDir, dir string) error {
	files, err := ManifestFiles(chartDir, dir)
	if err != nil {
		return err
	}
	old, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	for _, p := range old {
		if _, keep := files[filepath.Base(p)]; !keep && filepath.Base(p) != ManifestsValues {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("remove stale manifest: %w", err)
			}
		}
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("write manifest: %w", err)
		}
	}
	return nil
}

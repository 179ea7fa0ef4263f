package charttest

import (
	"fmt"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/getter"
	"helm.sh/helm/v3/pkg/releaseutil"
)

// KubeVersion is the Kubernetes version the chart is rendered for; the
// chart requires 1.29 or later.
const KubeVersion = "v1.33.0"

// RenderOptions says what to render.
type RenderOptions struct {
	ChartDir    string
	ReleaseName string
	Namespace   string
	// ValueFiles are merged in order over the chart's values.yaml.
	ValueFiles []string
	// Set holds --set style overrides, applied after ValueFiles.
	Set []string
}

// Validate reports a missing field.
func (o RenderOptions) Validate() error {
	switch {
	case o.ChartDir == "":
		return fmt.Errorf("render: no chart directory")
	case o.ReleaseName == "":
		return fmt.Errorf("render: no release name")
	case o.Namespace == "":
		return fmt.Errorf("render: no namespace")
	}
	return nil
}

// Values merges the value files and overrides of o (without the chart's
// defaults), as `helm template -f ... --set ...` does.
func (o RenderOptions) Values() (map[string]any, error) {
	vals, err := (&values.Options{ValueFiles: o.ValueFiles, Values: o.Set}).MergeValues(getter.Providers{})
	if err != nil {
		return nil, fmt.Errorf("merge values %v: %w", o.ValueFiles, err)
	}
	return vals, nil
}

// Manifest is one rendered document.
type Manifest struct {
	// Source is the template it came from.
	Source string
	// Content is the YAML document.
	Content string
}

// Render renders the chart like `helm template`, with no cluster (lookup
// finds nothing), and returns its documents in Helm's install order.
func Render(o RenderOptions) ([]Manifest, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	ch, err := loader.Load(o.ChartDir)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", o.ChartDir, err)
	}
	vals, err := o.Values()
	if err != nil {
		return nil, err
	}
	kv, err := chartutil.ParseKubeVersion(KubeVersion)
	if err != nil {
		return nil, fmt.Errorf("parse kube version %s: %w", KubeVersion, err)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = *kv
	top, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{
		Name: o.ReleaseName, Namespace: o.Namespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return nil, fmt.Errorf("values of chart %s: %w", o.ChartDir, err)
	}
	files, err := engine.Render(ch, top)
	if err != nil {
		return nil, fmt.Errorf("render chart %s: %w", o.ChartDir, err)
	}
	// Only templates produce objects; NOTES.txt and partials do not.
	for name := range files {
		if !strings.HasSuffix(name, ".yaml") {
			delete(files, name)
		}
	}
	hooks, sorted, err := releaseutil.SortManifests(files, caps.APIVersions, releaseutil.InstallOrder)
	if err != nil {
		return nil, fmt.Errorf("split rendered chart: %w", err)
	}
	if len(hooks) > 0 {
		return nil, fmt.Errorf("render chart: %d hooks; the chart has none and the rendered manifests could not apply them", len(hooks))
	}
	out := make([]Manifest, 0, len(sorted))
	for _, m := range sorted {
		out = append(out, Manifest{Source: m.Name, Content: strings.TrimSpace(m.Content)})
	}
	return out, nil
}

// Join returns the documents as one YAML stream, each headed by the
// template it came from.
func Join(ms []Manifest) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "---\n# Source: %s\n%s\n", m.Source, m.Content)
	}
	return b.String()
}

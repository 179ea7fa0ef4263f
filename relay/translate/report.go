package translate

import (
	"log/slog"
	"slices"
	"strings"
)

// MaxReportItems is how many ignored clusters and warnings a Report lists;
// the counts cover all of them.
const MaxReportItems = 10

// Report summarises a translation for logs and metrics.
type Report struct {
	Services  int // services translated
	Endpoints int // endpoints in all slices
	Slices    int // endpoint slices

	IgnoredClusters int              // clusters that are not a service port
	Ignored         []IgnoredCluster // the first MaxReportItems, by name

	// SkippedEndpoints counts LbEndpoints without an IP socket address and
	// port (DNS hostnames, pipes, Envoy internal addresses).
	SkippedEndpoints int

	WarningCount int      // problems that dropped part of the input
	Warnings     []string // the first MaxReportItems, sorted
}

// IgnoredCluster is a cluster that produced no service port, and why.
type IgnoredCluster struct {
	Name   string
	Reason string
}

// LogValue implements slog.LogValuer.
func (r Report) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.Int("services", r.Services),
		slog.Int("endpoints", r.Endpoints),
		slog.Int("slices", r.Slices),
		slog.Int("ignored_clusters", r.IgnoredClusters),
		slog.Int("skipped_endpoints", r.SkippedEndpoints),
		slog.Int("warnings", r.WarningCount),
	}
	if len(r.Ignored) > 0 {
		names := make([]string, len(r.Ignored))
		for i, ic := range r.Ignored {
			names[i] = ic.Name + " (" + ic.Reason + ")"
		}
		attrs = append(attrs, slog.String("ignored", strings.Join(names, ", ")))
	}
	if len(r.Warnings) > 0 {
		attrs = append(attrs, slog.String("first_warning", r.Warnings[0]))
	}
	return slog.GroupValue(attrs...)
}

// finish sorts and truncates the lists.
func (r *Report) finish() {
	slices.SortFunc(r.Ignored, func(a, b IgnoredCluster) int { return strings.Compare(a.Name, b.Name) })
	r.Ignored = slices.Clip(r.Ignored[:min(len(r.Ignored), MaxReportItems)])
	r.WarningCount = len(r.Warnings)
	slices.Sort(r.Warnings)
	r.Warnings = slices.Clip(r.Warnings[:min(len(r.Warnings), MaxReportItems)])
}

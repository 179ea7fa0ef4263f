package report

import (
	"fmt"

	"github.com/meshrelay/meshrelay/scale-tests/internal/results"
)

// Publish judges sum against the targets and writes the results
// directory dir: summary.json, report.md and (if sum.Config.Plots) the
// plots. The harness calls it at the end of a run; --rewrite-report calls
// it on an earlier run's summary after a change to the report's code.
func Publish(dir string, sum *results.Summary) error {
	sum.Targets = Targets(&sum.Config, sum)
	if err := results.Save(dir, sum); err != nil {
		return err
	}
	if sum.Config.Plots {
		if err := WritePlots(dir, sum); err != nil {
			return fmt.Errorf("plots: %w", err)
		}
	}
	return Write(dir, sum)
}

package results

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// File is the name of the summary in a results directory.
const File = "summary.json"

// Save writes sum as indented JSON to dir/summary.json.
func Save(dir string, sum *Summary) error {
	b, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", File, err)
	}
	if err := os.WriteFile(filepath.Join(dir, File), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", File, err)
	}
	return nil
}

// Load reads dir/summary.json.
func Load(dir string) (*Summary, error) {
	b, err := os.ReadFile(filepath.Join(dir, File))
	if err != nil {
		return nil, err
	}
	var sum Summary
	if err := json.Unmarshal(b, &sum); err != nil {
		return nil, fmt.Errorf("%s/%s: %w", dir, File, err)
	}
	return &sum, nil
}

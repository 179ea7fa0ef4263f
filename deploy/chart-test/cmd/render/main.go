// Command render writes deploy/kubernetes from the Helm chart (make manifests).
package main

import (
	"flag"
	"fmt"
	"os"

	charttest "github.com/meshrelay/meshrelay/deploy/chart-test"
)

func main() {
	chart := flag.String("chart", "../helm/meshrelay", "chart directory")
	out := flag.String("out", "../kubernetes", "manifests directory (holds values.yaml)")
	flag.Parse()
	if err := charttest.WriteManifests(*chart, *out); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

package chaos

import (
	"flag"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/testsupport/cgroupclient"
)

var (
	scaleFlag   = flag.String("chaos.scale", "ci", "scale of the cases: ci (small, seconds each) or large (make chaos)")
	resultsFlag = flag.String("chaos.results", "", "rewrite the results table between the markers of this markdown file (docs/reliability.md)")
)

// TestMain plays a child's role when this binary was re-executed as one
// (runChildRole, cgroupclient.RunIfChild), runs the cases otherwise, and
// prints (and with -chaos.results writes) the results table.
func TestMain(m *testing.M) {
	runChildRole()
	cgroupclient.RunIfChild()
	flag.Parse()
	if _, ok := scales[*scaleFlag]; !ok {
		fmt.Fprintf(os.Stderr, "-chaos.scale %q: want ci or large\n", *scaleFlag)
		os.Exit(2)
	}
	code := m.Run()
	table := renderResults()
	if table != "" && testing.Verbose() {
		fmt.Println(table)
	}
	if *resultsFlag != "" {
		if err := writeResults(*resultsFlag, table); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// scale sizes a case.
type scale struct {
	Services  int           // services in the simulator
	Endpoints int           // endpoints per service
	Agents    int           // node agents
	Declared  int           // services each agent declares
	Burst     time.Duration // length of the push burst
	Scan      int           // addresses in the miss scan
}

var scales = map[string]scale{
	"ci":    {Services: 40, Endpoints: 3, Agents: 3, Declared: 8, Burst: 3 * time.Second, Scan: 5_000},
	"large": {Services: 1_000, Endpoints: 5, Agents: 20, Declared: 50, Burst: 30 * time.Second, Scan: 100_000},
}

func currentScale() scale { return scales[*scaleFlag] }

// declaredBy is the set of services agent i of n declares: a window of
// the simulator's services, overlapping its neighbours'.
func declaredBy(i int, s scale) []int {
	var out []int
	for j := range s.Declared {
		out = append(out, (i*s.Declared/2+j)%s.Services)
	}
	return out
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/meshrelay/meshrelay/scale-tests/internal/config"
	"github.com/meshrelay/meshrelay/scale-tests/internal/launch"
	"github.com/meshrelay/meshrelay/scale-tests/internal/report"
	"github.com/meshrelay/meshrelay/scale-tests/internal/results"
	"github.com/meshrelay/meshrelay/scale-tests/internal/roles"
	"github.com/meshrelay/meshrelay/scale-tests/internal/scenario"
	"github.com/spf13/pflag"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run is the harness's main; it returns the exit status: 0 when every mode
// ran and passed its correctness gate, 1 when a gate failed or a Component
// died, 2 for a bad flag.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("scale-tests", pflag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line below
	cfg := config.Register(fs)
	rewrite := fs.String("rewrite-report", "", "rewrite report.md and the plots of an earlier run from its `DIR`/summary.json, and exit")
	role := fs.String("role", "", "run as a component (internal)")
	roleConfig := fs.String("role-config", "", "the component's JSON configuration (internal)")
	_ = fs.MarkHidden("role")
	_ = fs.MarkHidden("role-config")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprintln(stdout, "Usage: go run ./scale-tests [flags]   (see scale-tests/README.md)")
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(stderr, "scale-tests: %v\n", err)
		return 2
	}
	if *role != "" {
		f, ok := roles.Lookup(*role)
		if !ok {
			fmt.Fprintf(stderr, "scale-tests: unknown --role %q\n", *role)
			return 2
		}
		return launch.RunChild(*role, f, *roleConfig, stdin, stdout, stderr)
	}
	if *rewrite != "" {
		if err := rewriteReport(*rewrite); err != nil {
			fmt.Fprintf(stderr, "scale-tests: %v\n", err)
			return 1
		}
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "scale-tests: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "scale-tests: %v\n", strings.ReplaceAll(err.Error(), "\n", "; "))
		return 2
	}
	if cfg.Out == "" {
		cfg.Out = filepath.Join("scale-tests", "results", fmt.Sprintf("%s-%dn-%s", cfg.Scenario, cfg.Nodes, time.Now().Format("20060102-150405")))
	}
	cfg.Command = commandLine(args)
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "scale-tests: find own executable: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sum, err := scenario.Run(ctx, cfg, exe, stdout, log)
	if err != nil {
		fmt.Fprintf(stderr, "scale-tests: %v\n", err)
		return 1
	}
	report.Outcome(stdout, sum)
	if !sum.OK {
		return 1
	}
	return 0
}

// rewriteReport redraws the report and plots of a results directory from
// its Summary.json (after a change to the report's code).
func rewriteReport(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		return err
	}
	var sum results.Summary
	if err := json.Unmarshal(b, &sum); err != nil {
		return fmt.Errorf("%s/summary.json: %w", dir, err)
	}
	sum.Targets = report.Targets(&sum.Config, &sum)
	if err := results.WriteJSON(dir, "summary.json", &sum); err != nil {
		return err
	}
	if sum.Config.Plots {
		if err := report.WritePlots(dir, &sum); err != nil {
			return err
		}
	}
	return report.Write(dir, &sum)
}

// commandLine is the command that reproduces this run.
func commandLine(args []string) string {
	parts := []string{"go", "run", "./scale-tests"}
	for _, a := range args {
		if strings.ContainsAny(a, " \t'\"$") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

package main

import (
	"context"
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

	"github.com/spf13/pflag"

	"github.com/meshrelay/meshrelay/scale-tests/internal/config"
	"github.com/meshrelay/meshrelay/scale-tests/internal/launch"
	"github.com/meshrelay/meshrelay/scale-tests/internal/report"
	"github.com/meshrelay/meshrelay/scale-tests/internal/results"
	"github.com/meshrelay/meshrelay/scale-tests/internal/roles"
	"github.com/meshrelay/meshrelay/scale-tests/internal/scenario"
)

// Exit statuses.
const (
	exitOK     = 0 // every mode ran and passed its correctness gate
	exitFailed = 1 // a gate failed, a component died, or the run could not start
	exitUsage  = 2 // a bad flag
)

// errGateFailed ends a run whose results say it failed; they have been
// printed already.
var errGateFailed = errors.New("the run failed")

func main() {
	os.Exit(command(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// command parses the flags and runs the harness, a component (the hidden
// --role flag, when the harness re-executes itself) or a report rewrite.
// It returns the exit status.
func command(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
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
			return exitOK
		}
		fmt.Fprintf(stderr, "scale-tests: %v\n", err)
		return exitUsage
	}
	if *role != "" {
		f, ok := roles.Lookup(*role)
		if !ok {
			fmt.Fprintf(stderr, "scale-tests: unknown --role %q\n", *role)
			return exitUsage
		}
		return launch.RunChild(*role, f, *roleConfig, stdin, stdout, stderr)
	}
	if *rewrite != "" {
		if err := rewriteReport(*rewrite); err != nil {
			fmt.Fprintf(stderr, "scale-tests: %v\n", err)
			return exitFailed
		}
		return exitOK
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "scale-tests: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintf(stderr, "scale-tests: %v\n", strings.ReplaceAll(err.Error(), "\n", "; "))
		return exitUsage
	}
	cfg.Command = commandLine(args)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	switch err := run(ctx, cfg, stdout, log); {
	case err == nil:
		return exitOK
	case errors.Is(err, errGateFailed):
		return exitFailed
	default:
		fmt.Fprintf(stderr, "scale-tests: %v\n", err)
		return exitFailed
	}
}

// run runs every mode of cfg, writes the results directory and prints the
// outcome. It returns errGateFailed when a gate failed or a component
// died.
func run(ctx context.Context, cfg *config.Config, stdout io.Writer, log *slog.Logger) error {
	if cfg.Out == "" {
		name := fmt.Sprintf("%s-%dn", cfg.Scenario, cfg.Nodes)
		if cfg.API() == config.APIWorkload {
			name += "-workload"
		}
		cfg.Out = filepath.Join("scale-tests", "results", name+"-"+time.Now().Format("20060102-150405"))
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	sum, err := scenario.Run(ctx, cfg, exe, stdout, log)
	if err != nil {
		return err
	}
	report.Outcome(stdout, sum)
	if !sum.OK {
		return errGateFailed
	}
	return nil
}

// rewriteReport redraws the report and plots of a results directory from
// its summary.json (after a change to the report's code).
func rewriteReport(dir string) error {
	sum, err := results.Load(dir)
	if err != nil {
		return err
	}
	return report.Publish(dir, sum)
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

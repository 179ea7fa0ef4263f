package cliconfig

import (
	"context"
	"errors"
	"testing"

	"github.com/spf13/cobra"
)

func TestCommand(t *testing.T) {
	var got string
	cmd := Command(&cobra.Command{Use: "x"}, func(_ context.Context, r *Reader, _ []string) error {
		got = r.String("cluster")
		return r.Err()
	})
	AddConfigFlag(cmd.Flags())
	AddEtcdFlags(cmd.Flags(), "etcd")
	AddLogFlags(cmd.Flags())
	cmd.SetArgs([]string{"--cluster", "east"})
	if err := cmd.Execute(); err != nil || got != "east" {
		t.Fatalf("run: %v, cluster %q", err, got)
	}
	cmd.SetArgs([]string{"--no-such-flag"})
	if err := cmd.Execute(); ExitCode(err) != 2 {
		t.Fatalf("unknown flag: %v (exit %d), want exit 2", err, ExitCode(err))
	}
	boom := errors.New("boom")
	cmd2 := Command(&cobra.Command{Use: "y"}, func(context.Context, *Reader, []string) error { return boom })
	AddConfigFlag(cmd2.Flags())
	cmd2.SetArgs(nil)
	if err := cmd2.Execute(); !errors.Is(err, boom) || ExitCode(err) != 1 {
		t.Fatalf("run error: %v", err)
	}
}

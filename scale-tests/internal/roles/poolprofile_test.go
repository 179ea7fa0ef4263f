package roles

import (
	"log/slog"
	"strings"
	"testing"
)

// TestPoolProfileRejectsBadSettings: a bad rate or length is an error that
// names the variable, not a silently ignored setting.
func TestPoolProfileRejectsBadSettings(t *testing.T) {
	for _, c := range []struct{ env, value string }{
		{envPoolProfileHz, "0"},
		{envPoolProfileHz, "fast"},
		{envPoolProfileHz, "20000"},
		{envPoolProfileSeconds, "-1"},
	} {
		t.Run(c.env+"="+c.value, func(t *testing.T) {
			t.Setenv(envPoolProfile, t.TempDir())
			t.Setenv(c.env, c.value)
			pp, err := startPoolProfile("pool", slog.New(slog.DiscardHandler))
			if err == nil {
				pp.mu.Lock()
				pp.stopLocked()
				pp.mu.Unlock()
				t.Fatalf("%s=%s accepted", c.env, c.value)
			}
			if !strings.Contains(err.Error(), c.env) {
				t.Fatalf("error %q does not name %s", err, c.env)
			}
		})
	}
}

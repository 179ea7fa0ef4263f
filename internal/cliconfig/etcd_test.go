package cliconfig

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestEtcdFlagsFitTogether: TLS flags with plaintext endpoints, a
// certificate without its key, a user without a password file and both
// endpoint sources are usage errors naming the flag.
func TestEtcdFlagsFitTogether(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"tls with http":       {args: []string{"--etcd-ca", "ca.crt", "--etcd-endpoints", "https://127.0.0.1:2379,http://127.0.0.1:2380"}, want: "invalid --etcd-endpoints"},
		"cert with no scheme": {args: []string{"--etcd-cert", "c", "--etcd-key", "k", "--etcd-endpoints", "127.0.0.1:2379"}, want: "want https:// endpoints"},
		"cert without key":    {args: []string{"--etcd-cert", "c", "--etcd-endpoints", "https://127.0.0.1:2379"}, want: "invalid --etcd-key"},
		"user without file":   {args: []string{"--etcd-username", "u"}, want: "invalid --etcd-password-file"},
		"file without user":   {args: []string{"--etcd-password-file", "p"}, want: "invalid --etcd-password-file"},
		"both sources":        {args: []string{"--etcd-endpoints", "http://127.0.0.1:1", "--etcd-endpoints-file", "f"}, want: "invalid --etcd-endpoints-file"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := runBound(t, tc.args...)
			if ExitCode(err) != 2 || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v (exit %d), want exit 2 with %q", err, ExitCode(err), tc.want)
			}
		})
	}
	if _, err := runBound(t, "--etcd-ca", "ca.crt", "--etcd-endpoints", "https://127.0.0.1:2379", "--etcd-username", "u", "--etcd-password-file", "p"); err != nil {
		t.Fatalf("consistent flags refused: %v", err)
	}
}

func TestReadSecretFile(t *testing.T) {
	dir := t.TempDir()
	p := writeConfig(t, "s3cret\n")
	if s, err := ReadSecretFile(p); err != nil || s != "s3cret" {
		t.Fatalf("%q %v", s, err)
	}
	empty := writeConfig(t, "\n")
	if _, err := ReadSecretFile(empty); err == nil {
		t.Error("empty secret accepted")
	}
	if _, err := ReadSecretFile(filepath.Join(dir, "none")); err == nil {
		t.Error("missing file accepted")
	}
}

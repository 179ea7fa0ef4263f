package main

import (
	"context"
	"os"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"

	"github.com/meshrelay/meshrelay/internal/cliconfig"
)

// tokenFile is the per-RPC credential of --istiod-token-file: the JWT
// Istiod's 15012 port expects, sent as "authorization: Bearer <token>". The
// kubelet rotates a projected token in place, so the file is read again
// when its modification time or size changes.
type tokenFile struct {
	path string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	token   string
}

// newTokenFile reads the token once: a missing or empty file is a
// configuration error.
func newTokenFile(path string) (*tokenFile, error) {
	t := &tokenFile{path: path}
	if _, err := t.current(); err != nil {
		return nil, err
	}
	return t, nil
}

// current returns the token, reading the file again when it changed. A
// file that went missing or empty keeps the last token (Istiod refuses it
// once it expires, which shows as an upstream error).
func (t *tokenFile) current() (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fi, err := os.Stat(t.path)
	if err == nil && fi.ModTime().Equal(t.modTime) && fi.Size() == t.size && t.token != "" {
		return t.token, nil
	}
	var tok string
	if err == nil {
		tok, err = cliconfig.ReadSecretFile(t.path)
	}
	if err != nil {
		if t.token != "" {
			return t.token, nil
		}
		return "", err
	}
	t.token, t.modTime, t.size = tok, fi.ModTime(), fi.Size()
	return tok, nil
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (t *tokenFile) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	tok, err := t.current()
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + tok}, nil
}

// RequireTransportSecurity implements credentials.PerRPCCredentials: the
// token never travels in plaintext.
func (t *tokenFile) RequireTransportSecurity() bool { return true }

var _ credentials.PerRPCCredentials = (*tokenFile)(nil)

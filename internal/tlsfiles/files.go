package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
)

// Options name the PEM files of a TLS client.
type Options struct {
	// CAFile is the bundle of CAs that sign the server's certificate.
	// Empty means the system roots.
	CAFile string
	// CertFile and KeyFile are the client certificate and its key, both or
	// neither.
	CertFile, KeyFile string
	// ServerName is the name verified in the server's certificate. Empty
	// means the host the connection dials.
	ServerName string
	// Logger receives a warning when a file fails to load and the last
	// good material is kept. Default: discarded.
	Logger *slog.Logger
}

// Validate checks that the certificate and key come together.
func (o Options) Validate() error {
	if (o.CertFile == "") != (o.KeyFile == "") {
		return errors.New("tls: a client certificate and its key go together")
	}
	return nil
}

// Files loads the material of Options, again whenever a file changes.
type Files struct {
	opts Options
	log  *slog.Logger

	mu   sync.Mutex
	last material // the last material that loaded completely
}

// material is what one load of the files yields.
type material struct {
	ca, cert, key []byte // file contents, to tell a change
	roots         *x509.CertPool
	pair          *tls.Certificate
}

// New loads the files once; an error here is the caller's configuration
// error (a missing file, no certificate in the CA file, a key that does not
// match the certificate).
func New(opts Options) (*Files, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	f := &Files{opts: opts, log: opts.Logger}
	if f.log == nil {
		f.log = slog.New(slog.DiscardHandler)
	}
	m, err := f.load(material{})
	if err != nil {
		return nil, err
	}
	f.last = m
	return f, nil
}

// Config returns a client configuration holding the files' current
// contents, verifying the server against serverName unless Options set
// one. A file that fails to load keeps the last good material.
func (f *Files) Config(serverName string) *tls.Config {
	f.mu.Lock()
	m, err := f.load(f.last)
	if err != nil {
		f.log.Warn("tls files: keeping the last good certificates", "err", err)
	} else {
		f.last = m
	}
	m = f.last
	f.mu.Unlock()

	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: m.roots, ServerName: f.opts.ServerName}
	if cfg.ServerName == "" {
		cfg.ServerName = serverName
	}
	if m.pair != nil {
		cfg.Certificates = []tls.Certificate{*m.pair}
	}
	return cfg
}

// load reads the files; unchanged contents reuse prev's parsed material.
func (f *Files) load(prev material) (material, error) {
	var m material
	var err error
	if m.ca, err = readOptional(f.opts.CAFile); err != nil {
		return prev, err
	}
	if m.cert, err = readOptional(f.opts.CertFile); err != nil {
		return prev, err
	}
	if m.key, err = readOptional(f.opts.KeyFile); err != nil {
		return prev, err
	}
	if string(m.ca) == string(prev.ca) && string(m.cert) == string(prev.cert) && string(m.key) == string(prev.key) && (prev.roots != nil || m.ca == nil) {
		return prev, nil
	}
	if m.ca != nil {
		m.roots = x509.NewCertPool()
		if !m.roots.AppendCertsFromPEM(m.ca) {
			return prev, fmt.Errorf("tls CA file %s: no PEM certificate", f.opts.CAFile)
		}
	}
	if m.cert != nil {
		pair, err := tls.X509KeyPair(m.cert, m.key)
		if err != nil {
			return prev, fmt.Errorf("tls client certificate %s, key %s: %w", f.opts.CertFile, f.opts.KeyFile, err)
		}
		m.pair = &pair
	}
	return m, nil
}

// readOptional reads path; an empty path is no file (nil).
func readOptional(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	return b, nil
}

package tlsfiles

import (
	"context"
	"net"

	"google.golang.org/grpc/credentials"
)

// Credentials returns gRPC transport credentials whose every handshake
// uses the files' current contents (Files.Config), verifying the server's
// certificate against the CA file and Options.ServerName, or else the host
// of the dialed address.
func (f *Files) Credentials() credentials.TransportCredentials {
	return &transport{files: f}
}

// transport is credentials.TransportCredentials over Files.
type transport struct {
	files *Files
}

func (t *transport) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	host := authority
	if h, _, err := net.SplitHostPort(authority); err == nil {
		host = h
	}
	cfg := t.files.Config(host)
	// gRPC's TLS credentials verify the name they are given as the
	// authority, whatever the config's ServerName says.
	return credentials.NewTLS(cfg).ClientHandshake(ctx, cfg.ServerName, conn)
}

func (t *transport) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return credentials.NewTLS(t.files.Config("")).ServerHandshake(conn)
}

func (t *transport) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", ServerName: t.files.opts.ServerName}
}

func (t *transport) Clone() credentials.TransportCredentials { return &transport{files: t.files} }

// OverrideServerName is part of the gRPC interface, deprecated there; the
// server name comes from Options.ServerName.
func (t *transport) OverrideServerName(string) error { return nil }

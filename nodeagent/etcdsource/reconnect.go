package etcdsource

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
)

// connClient is what a Client offers when it can tell its connection state
// (*clientv3.Client does, through ActiveConnection).
type connClient interface {
	ActiveConnection() *grpc.ClientConn
}

// followConnection asks the control loop for a generation probe each time
// the client's connection becomes ready again after it was not, until ctx is
// done. etcd cannot be wiped, replaced or restored without its clients
// losing their connections, so a probe at reconnection finds a rebuild at
// once; the ProbeInterval ticks are a backstop for what a connection state
// cannot show (a proxy that keeps the client's connection while etcd
// behind it is replaced). A client without a connection state makes this
// return at once: the ticks alone detect rebuilds.
func (s *Source) followConnection(ctx context.Context) {
	cc, ok := s.c.(connClient)
	if !ok {
		return
	}
	conn := cc.ActiveConnection()
	if conn == nil {
		return
	}
	state := conn.GetState()
	wasDown := false
	for conn.WaitForStateChange(ctx, state) {
		state = conn.GetState()
		switch {
		case state == connectivity.Ready && wasDown:
			wasDown = false
			s.stats.reconnects.Add(1)
			kick(s.probe)
		case state != connectivity.Ready:
			// Idle included: a channel with open watches goes idle only
			// when its connection was lost.
			wasDown = true
		}
	}
}

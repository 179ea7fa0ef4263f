package istiodsim

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
)

// Nack is a request that carried error_detail: the client rejected the
// response with the given nonce.
type Nack struct {
	// Stream numbers the Sim's streams from 1; Node is the stream's node id.
	Stream  uint64
	Node    string
	TypeURL string
	// Version is the version the client still holds (its last accepted).
	Version string
	Nonce   string
	Code    codes.Code
	Message string
}

// Stats counts what the Sim served since New.
type Stats struct {
	// Responses and Bytes count the responses sent (pushes, answers to
	// requests and malformed responses) and their encoded size.
	Responses uint64
	Bytes     uint64
	// StreamsTotal counts the streams opened.
	StreamsTotal uint64
	// Pushes counts the pushes made (each goes to every stream).
	Pushes uint64
	// StaleRequests counts requests ignored because their nonce was not
	// the last one sent on their stream.
	StaleRequests uint64
}

// Stats returns the Sim's counters.
func (s *Sim) Stats() Stats {
	s.mu.Lock()
	pushes := s.pushes
	s.mu.Unlock()
	return Stats{
		Responses:     s.responses.Load(),
		Bytes:         s.bytes.Load(),
		StreamsTotal:  s.streamsTotal.Load(),
		Pushes:        pushes,
		StaleRequests: s.stale.Load(),
	}
}

// Streams is the number of SotW streams currently open (DeltaStreams
// counts the delta ones).
func (s *Sim) Streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// Nacks returns every NACK received, oldest first.
func (s *Sim) Nacks() []Nack {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.nacks)
}

// Violations returns every protocol violation clients committed, oldest
// first: requests Istiod would honour but meshrelay's client must never
// send (an EDS or RDS request with no names, which unsubscribes
// everything) and requests Istiod refuses (a stream without a valid node
// id).
func (s *Sim) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.violated)
}

// LastPushTime is when the last push carrying a change of service svc was
// handed to the streams; zero if none was.
func (s *Sim) LastPushTime(svc int) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if svc < 0 || svc >= len(s.services) {
		return time.Time{}
	}
	return s.services[svc].pushedAt
}

func (s *Sim) recordNack(n Nack) {
	s.log.Info("istiodsim NACK", "stream", n.Stream, "node", n.Node, "type", n.TypeURL, "nonce", n.Nonce, "message", n.Message)
	s.mu.Lock()
	s.nacks = append(s.nacks, n)
	s.mu.Unlock()
}

func (s *Sim) violate(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.log.Warn("istiodsim protocol violation", "violation", msg)
	s.mu.Lock()
	s.violated = append(s.violated, msg)
	s.mu.Unlock()
}

// nonce returns a new nonce of sn's instance.
func (s *Sim) nonce(sn *snapshot) string {
	return sn.instance + "-" + strconv.FormatUint(s.nonces.Add(1), 10)
}

// WaitAcked waits until no push is pending and every open stream has
// answered (ACKed or NACKed) every response sent to it, polling until ctx
// ends. It cannot know about requests still on their way to the Sim.
func (s *Sim) WaitAcked(ctx context.Context) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		busy := s.unanswered()
		if busy == "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for ACKs: %s: %w", busy, ctx.Err())
		case <-tick.C:
		}
	}
}

// unanswered describes what WaitAcked still waits for, or is empty.
func (s *Sim) unanswered() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.pending.empty() {
		return "a push is pending"
	}
	for st := range s.streams {
		st.mu.Lock()
		busy, queued := st.busy, len(st.queue)
		var waiting []string
		for t, w := range st.watches {
			if w != nil && w.nonceSent != w.nonceAnswered {
				waiting = append(waiting, xdsType(t).String())
			}
		}
		st.mu.Unlock()
		switch {
		case busy || queued > 0:
			return fmt.Sprintf("stream %d is sending", st.id)
		case len(waiting) > 0:
			return fmt.Sprintf("stream %d has not answered %v", st.id, waiting)
		}
	}
	return ""
}

package reconnect

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/meshrelay/meshrelay/internal/backoff"
)

func TestReceive(t *testing.T) {
	msgs := []int{1, 2}
	recv := func() (int, error) {
		if len(msgs) == 0 {
			return 0, io.EOF
		}
		m := msgs[0]
		msgs = msgs[1:]
		return m, nil
	}
	out := make(chan Received[int])
	errc := make(chan error, 1)
	go func() { errc <- Receive(context.Background(), recv, out) }()
	for _, want := range []int{1, 2} {
		if got := <-out; got.Msg != want || got.At.IsZero() {
			t.Fatalf("received %+v, want %d with a time", got, want)
		}
	}
	if err := <-errc; err == nil || !strings.Contains(err.Error(), "closed by server") {
		t.Errorf("end = %v, want closed by server", err)
	}

	boom := errors.New("boom")
	if err := Receive(context.Background(), func() (int, error) { return 0, boom }, out); !errors.Is(err, boom) {
		t.Errorf("end = %v, want wrapping boom", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Receive(ctx, func() (int, error) { return 1, nil }, make(chan Received[int])); !errors.Is(err, context.Canceled) {
		t.Errorf("end = %v, want context.Canceled", err)
	}
}

func TestLoopReopensUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runs := 0
	var ended []error
	err := Loop(ctx, slog.New(slog.DiscardHandler), "x", backoff.Options{Initial: time.Millisecond, Max: 2 * time.Millisecond},
		func(context.Context) (bool, error) {
			runs++
			if runs == 3 {
				cancel()
				return true, errors.New("cancelled")
			}
			return runs == 2, errors.New("failed")
		},
		func(err error) { ended = append(ended, err) })
	if !errors.Is(err, context.Canceled) || runs != 3 || len(ended) != 2 {
		t.Errorf("Loop = %v after %d runs, %d ends; want Canceled, 3, 2", err, runs, len(ended))
	}
}

func TestDialOptionsExtraLast(t *testing.T) {
	if n, m := len(DialOptions(1, backoff.Options{})), len(DialOptions(1, backoff.Options{}, nil, nil)); m != n+2 {
		t.Errorf("%d options with 2 extra, %d without", m, n)
	}
}

func TestSendLatestPerTypeUntilFailure(t *testing.T) {
	reqs := NewRequests[string]()
	reqs.Put("cds", "cds-1")
	reqs.Put("eds", "eds-1")
	reqs.Put("cds", "cds-2")
	boom := errors.New("boom")
	var sent []string
	err := Send(context.Background(), reqs, func(r string) error {
		sent = append(sent, r)
		if len(sent) == 3 {
			return boom
		}
		if len(sent) == 2 {
			reqs.Put("lds", "lds-1")
		}
		return nil
	})
	if !errors.Is(err, boom) || strings.Join(sent, ",") != "cds-2,eds-1,lds-1" {
		t.Errorf("Send = %v after %v; want boom after cds-2,eds-1,lds-1", err, sent)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Send(ctx, NewRequests[string](), func(string) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("Send on a cancelled context = %v", err)
	}
}

package roles

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/relay/etcdsink"
	"github.com/meshrelay/meshrelay/scale-tests/internal/measure"
)

// CommitsRequest asks a relay replica for the address changes of the
// transactions it committed since Since (Unix nanoseconds).
type CommitsRequest struct {
	Since int64 `json:"since"`
}

// CommitsResult answers a CommitsRequest.
type CommitsResult struct {
	Commits []measure.Commit `json:"commits"`
}

// commitRecorder is the relay's etcd client with every committed
// transaction noted in a CommitLog, with the time etcd answered: the
// commit stage of the propagation lag.
type commitRecorder struct {
	etcdsink.Client
	log *measure.CommitLog
}

func (c commitRecorder) Txn(ctx context.Context) clientv3.Txn {
	return &recordedTxn{Txn: c.Client.Txn(ctx), log: c.log}
}

type recordedTxn struct {
	clientv3.Txn
	log  *measure.CommitLog
	then []clientv3.Op
}

func (t *recordedTxn) If(cs ...clientv3.Cmp) clientv3.Txn {
	t.Txn = t.Txn.If(cs...)
	return t
}

func (t *recordedTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	t.Txn = t.Txn.Then(ops...)
	t.then = append(t.then, ops...)
	return t
}

func (t *recordedTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	t.Txn = t.Txn.Else(ops...)
	return t
}

func (t *recordedTxn) Commit() (*clientv3.TxnResponse, error) {
	sent := time.Now()
	resp, err := t.Txn.Commit()
	if err != nil || !resp.Succeeded {
		return resp, err
	}
	at := time.Now()
	keys := make([]string, 0, len(t.then))
	values := make([][]byte, 0, len(t.then))
	for _, op := range t.then {
		switch {
		case op.IsPut():
			keys = append(keys, string(op.KeyBytes()))
			values = append(values, op.ValueBytes())
		case op.IsDelete():
			keys = append(keys, string(op.KeyBytes()))
			values = append(values, nil)
		}
	}
	t.log.Add(resp.Header.Revision, sent, at, keys, values)
	return resp, err
}

package etcdsink

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/keyspace"
	"github.com/meshrelay/meshrelay/internal/model"
	"github.com/meshrelay/meshrelay/internal/testsupport/testenv"
	v1 "github.com/meshrelay/meshrelay/proto/meshrelay/v1"
)

// recordingClient passes everything to a real etcd client and records the
// operations of every committed transaction.
type recordingClient struct {
	Client
	mu   sync.Mutex
	txns [][]clientv3.Op
}

func (r *recordingClient) Txn(ctx context.Context) clientv3.Txn {
	return &recordingTxn{Txn: r.Client.Txn(ctx), rec: r}
}

func (r *recordingClient) committed() [][]clientv3.Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]clientv3.Op(nil), r.txns...)
}

type recordingTxn struct {
	clientv3.Txn
	rec *recordingClient
	ops []clientv3.Op
}

func (t *recordingTxn) If(cs ...clientv3.Cmp) clientv3.Txn { t.Txn = t.Txn.If(cs...); return t }
func (t *recordingTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	t.Txn = t.Txn.Else(ops...)
	return t
}

func (t *recordingTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	t.ops = ops
	t.Txn = t.Txn.Then(ops...)
	return t
}

func (t *recordingTxn) Commit() (*clientv3.TxnResponse, error) {
	resp, err := t.Txn.Commit()
	if err == nil && resp.Succeeded {
		t.rec.mu.Lock()
		t.rec.txns = append(t.rec.txns, t.ops)
		t.rec.mu.Unlock()
	}
	return resp, err
}

func opBytes(ops []clientv3.Op) int {
	n := 0
	for _, op := range ops {
		n += len(op.KeyBytes()) + len(op.ValueBytes())
	}
	return n
}

// serviceOf returns the service a key under services/ belongs to.
func serviceOf(key string) (keyspace.Service, bool) {
	k, ok := space.ParseServiceKey(key)
	return k.Service, ok
}

func TestTxnPacking(t *testing.T) {
	cases := []struct {
		name        string
		endpoints   int
		maxTxnBytes int
		wantMaxOps  int // spec + slice + VIP = 3 ops per service
	}{
		{name: "ops bound", endpoints: 2, maxTxnBytes: 1 << 20, wantMaxOps: 126},
		{name: "bytes bound", endpoints: 100, maxTxnBytes: 32 << 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := testenv.StartEtcd(t, embedetcd.Options{})
			rec := &recordingClient{Client: testenv.Client(t, srv.Endpoints())}
			opts := testOptions()
			opts.MaxTxnBytes = tc.maxTxnBytes
			opts.Window = 50 * time.Millisecond
			s := New(rec, opts)
			const n = 300
			present := make([]keyspace.Service, n)
			for i := range n {
				present[i] = svcName(i)
				s.Set(present[i], newService(present[i], []string{vip(i)}, tc.endpoints, 0), time.Now())
			}
			s.Complete(present)
			testenv.Run(t, s.Run)
			waitSynced(t, s)

			txnOf := map[keyspace.Service]int{}
			servicesPer := map[int]int{}
			maxOps := 0
			for i, ops := range rec.committed() {
				if len(ops) > DefaultMaxTxnOps {
					t.Errorf("txn %d has %d ops", i, len(ops))
				}
				if b := opBytes(ops); b > tc.maxTxnBytes {
					t.Errorf("txn %d has %d bytes, limit %d", i, b, tc.maxTxnBytes)
				}
				maxOps = max(maxOps, len(ops))
				for _, op := range ops {
					svc, ok := serviceOf(string(op.KeyBytes()))
					if !ok {
						continue
					}
					if j, seen := txnOf[svc]; seen && j != i {
						t.Errorf("%s written by txns %d and %d", svc, j, i)
					} else if !seen {
						servicesPer[i]++
					}
					txnOf[svc] = i
				}
			}
			if len(txnOf) != n {
				t.Fatalf("%d services written, want %d", len(txnOf), n)
			}
			packed := 0
			for _, k := range servicesPer {
				packed = max(packed, k)
			}
			if packed < 2 {
				t.Errorf("no transaction carries two services")
			}
			if tc.wantMaxOps != 0 && maxOps != tc.wantMaxOps {
				t.Errorf("largest txn has %d ops, want %d (42 services of 3 ops)", maxOps, tc.wantMaxOps)
			}
			if tc.wantMaxOps == 0 && maxOps >= DefaultMaxTxnOps-2 {
				t.Errorf("byte limit never bound: largest txn has %d ops", maxOps)
			}
		})
	}
}

// TestVIPHandoverInOneBatch: a service deleted and another taking its VIP
// in the same batch never put the same key twice in one transaction (etcd
// refuses that) and end with the new owner.
func TestVIPHandoverInOneBatch(t *testing.T) {
	srv := testenv.StartEtcd(t, embedetcd.Options{})
	rec := &recordingClient{Client: testenv.Client(t, srv.Endpoints())}
	opts := testOptions()
	opts.Window = 100 * time.Millisecond
	s := New(rec, opts)
	testenv.Run(t, s.Run)
	a, b := svcName(1), svcName(2)
	s.Set(a, newService(a, []string{vip(7)}, 1, 0), time.Now())
	testenv.EventuallyTrue(t, "a written", func() bool { return get(t, rec, space.VIP(vip(7))) != nil })

	s.Set(a, nil, time.Now())
	s.Set(b, newService(b, []string{vip(7)}, 1, 0), time.Now())
	testenv.EventuallyTrue(t, "b owns the VIP", func() bool {
		v := get(t, rec, space.VIP(vip(7)))
		return v != nil && string(v.value) == b.String() && countPrefix(t, rec, space.ServicePrefix(a)) == 0
	})
	for i, ops := range rec.committed() {
		seen := map[string]bool{}
		for _, op := range ops {
			k := string(op.KeyBytes())
			if seen[k] {
				t.Errorf("txn %d touches %s twice", i, k)
			}
			seen[k] = true
		}
	}
	if st := s.Stats(); st.Retries != 0 {
		t.Errorf("handover needed %d retries: %s", st.Retries, st.LastError)
	}
}

// TestValueCopiesEveryField guards specValue and sliceValue, which copy
// the schema's fields one by one.
func TestValueCopiesEveryField(t *testing.T) {
	if n := (&v1.ServiceSpec{}).ProtoReflect().Descriptor().Fields().Len(); n != 11 {
		t.Errorf("ServiceSpec has %d fields; update specValue to copy the new ones, then this count", n)
	}
	if n := (&v1.EndpointSlice{}).ProtoReflect().Descriptor().Fields().Len(); n != 5 {
		t.Errorf("EndpointSlice has %d fields; update sliceValue to copy the new ones, then this count", n)
	}
	svc := newService(svcName(1), []string{vip(1), vip(2)}, 3, 0)
	b, err := specValue(svc.Spec, 3, "h", 7, 9)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), svc.Spec.GetHostname()) || !strings.Contains(string(b), vip(2)) {
		t.Error("spec value lost content")
	}
	if got, err := model.DecodeSpec(b); err != nil || got.GetSliceGeneration() != 3 {
		t.Errorf("spec value's slice generation: %v, %v", got.GetSliceGeneration(), err)
	}
}

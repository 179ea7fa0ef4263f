package mailbox

import (
	"slices"
	"testing"
)

func TestLatestWinsInFirstPutOrder(t *testing.T) {
	m := New[string, int]()
	if _, ok := m.Pop(); ok {
		t.Fatal("Pop on an empty mailbox returned a value")
	}
	for i, k := range []string{"cds", "lds", "cds", "eds", "cds"} {
		replaced := m.Put(k, i)
		if want := k == "cds" && i > 0; replaced != want {
			t.Errorf("Put(%s, %d) replaced = %v, want %v", k, i, replaced, want)
		}
	}
	select {
	case <-m.Ready():
	default:
		t.Fatal("Ready not signalled after Put")
	}
	if m.Len() != 3 || m.Replaced() != 2 {
		t.Fatalf("Len %d, Replaced %d; want 3, 2", m.Len(), m.Replaced())
	}
	var got []int
	for v, ok := m.Pop(); ok; v, ok = m.Pop() {
		got = append(got, v)
	}
	if want := []int{4, 1, 3}; !slices.Equal(got, want) {
		t.Errorf("popped %v, want %v (latest per key, keys in first-put order)", got, want)
	}
	m.Put("cds", 9)
	if v, ok := m.Pop(); !ok || v != 9 {
		t.Errorf("Pop after drain = %d, %v; want 9, true", v, ok)
	}
}

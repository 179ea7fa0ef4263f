package mailbox

import "sync"

// Mailbox holds at most one value per key. Put never blocks, so the
// goroutine putting never waits on the one taking. Its size is bounded by
// the number of distinct keys. The zero value is not usable; see New.
type Mailbox[K comparable, V any] struct {
	ready chan struct{} // capacity 1: "may be non-empty"

	mu       sync.Mutex
	order    []K // keys with a value, oldest first
	vals     map[K]V
	replaced uint64
}

// New returns an empty Mailbox.
func New[K comparable, V any]() *Mailbox[K, V] {
	return &Mailbox[K, V]{ready: make(chan struct{}, 1), vals: map[K]V{}}
}

// Put stores v under k and signals Ready. A value under k not yet taken is
// replaced (k keeps its place in the order); Put reports whether one was.
func (m *Mailbox[K, V]) Put(k K, v V) (replaced bool) {
	m.mu.Lock()
	if _, replaced = m.vals[k]; replaced {
		m.replaced++
	} else {
		m.order = append(m.order, k)
	}
	m.vals[k] = v
	m.mu.Unlock()
	select {
	case m.ready <- struct{}{}:
	default:
	}
	return replaced
}

// Pop takes the value of the oldest key, if any.
func (m *Mailbox[K, V]) Pop() (v V, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.order) == 0 {
		return v, false
	}
	k := m.order[0]
	m.order = m.order[1:]
	v = m.vals[k]
	delete(m.vals, k)
	return v, true
}

// Ready receives after a Put. A receiver drains with Pop until it reports
// nothing, then waits on Ready again.
func (m *Mailbox[K, V]) Ready() <-chan struct{} { return m.ready }

// Len is the number of values waiting.
func (m *Mailbox[K, V]) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.order)
}

// Replaced is how many values were replaced before being taken.
func (m *Mailbox[K, V]) Replaced() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.replaced
}

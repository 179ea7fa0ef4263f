package launch

import (
	"strings"
	"sync"
)

// lineRing keeps the last lines written to it.
type lineRing struct {
	mu    sync.Mutex
	lines []string
	max   int
	part  string
}

func newLineRing(n int) *lineRing { return &lineRing{max: n} }

func (r *lineRing) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.part + string(p)
	parts := strings.Split(s, "\n")
	r.part = parts[len(parts)-1]
	for _, line := range parts[:len(parts)-1] {
		r.lines = append(r.lines, line)
		if len(r.lines) > r.max {
			r.lines = r.lines[1:]
		}
	}
	return len(p), nil
}

func (r *lineRing) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := strings.Join(r.lines, "\n")
	if r.part != "" {
		out += "\n" + r.part
	}
	if out == "" {
		return "  (no output)"
	}
	return out
}

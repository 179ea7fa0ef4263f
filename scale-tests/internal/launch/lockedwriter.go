package launch

import (
	"errors"
	"io"
	"os"
	"sync"
)

// lockedWriter serialises writes of stdout and stderr copies to one file.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.w.Write(p)
	if errors.Is(err, os.ErrClosed) {
		return len(p), nil
	}
	return n, err
}

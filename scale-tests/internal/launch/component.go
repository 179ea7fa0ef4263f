package launch

import (
	"fmt"
	"io"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/meshrelay/meshrelay/scale-tests/internal/control"
)

// Component is one child process: the harness binary re-executed with a
// hidden --role flag, so that its CPU and memory are its own.
type Component struct {
	// Name is the component's name; PID its process id.
	Name string
	PID  int
	cmd  *exec.Cmd
	// Ready is what the child reported once it served; Control
	// reaches its control API.
	Ready   ReadyInfo
	Control *control.Client

	// exited is closed when the process has exited; err is then its exit
	// error (nil for status 0).
	exited chan struct{}
	err    error
	// stdin stays open while the harness lives: the child exits on EOF.
	stdin io.WriteCloser
	// expected is set before the harness stops or kills the process on
	// purpose, so that its exit is not reported as a failure.
	expected atomic.Bool
	tail     *lineRing
}

// Failure describes an unexpected exit for the user.
func (c *Component) Failure() error {
	return fmt.Errorf("component %s (pid %d) died: %v; last output:\n%s", c.Name, c.PID, c.err, c.tail.String())
}

// Stop asks the process to exit (SIGTERM) and kills it (SIGKILL) if it has
// not after grace. It returns once the process is gone.
func (c *Component) Stop(grace time.Duration) {
	c.expected.Store(true)
	select {
	case <-c.exited:
		return
	default:
	}
	_ = syscall.Kill(c.PID, syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(grace):
		c.Kill()
	}
}

// Kill kills the process (SIGKILL, by PID) and waits until it is gone.
func (c *Component) Kill() {
	c.expected.Store(true)
	select {
	case <-c.exited:
		return
	default:
	}
	_ = syscall.Kill(c.PID, syscall.SIGKILL)
	<-c.exited
}

package cgroupclient

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Client is a running client process inside a cgroup.
type Client struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Scanner
	mu     sync.Mutex
	stderr *bytes.Buffer
}

// Start re-executes this binary inside cgroupDir (a cgroup v2 directory).
// args are passed to it (a test binary needs "-test.run=^$").
func Start(cgroupDir string, args ...string) (*Client, error) {
	dir, err := os.Open(cgroupDir)
	if err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", cgroupDir, err)
	}
	defer dir.Close()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd()), Pdeathsig: syscall.SIGKILL}
	c := &Client{cmd: cmd, stderr: &bytes.Buffer{}}
	cmd.Stderr = c.stderr
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c.stdout = bufio.NewScanner(out)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start client in cgroup %s: %w", cgroupDir, err)
	}
	return c, nil
}

// Pid is the client's process id.
func (c *Client) Pid() int { return c.cmd.Process.Pid }

// Do sends one request and waits for its result.
func (c *Client) Do(req Request) (Result, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	b, _ := json.Marshal(req)
	if _, err := c.stdin.Write(append(b, '\n')); err != nil {
		return Result{}, fmt.Errorf("client %d: %w (stderr: %s)", c.Pid(), err, c.stderr)
	}
	if !c.stdout.Scan() {
		return Result{}, fmt.Errorf("client %d exited: %v (stderr: %s)", c.Pid(), c.stdout.Err(), c.stderr)
	}
	var res Result
	if err := json.Unmarshal(c.stdout.Bytes(), &res); err != nil {
		return Result{}, fmt.Errorf("client %d: %w", c.Pid(), err)
	}
	return res, nil
}

// Close ends the client: stdin closes, and a client still busy after 10 s
// is killed (by its PID: it is our child).
func (c *Client) Close() error {
	c.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		return <-done
	}
}

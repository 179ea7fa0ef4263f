package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/meshrelay/meshrelay/internal/embedetcd"
	"github.com/meshrelay/meshrelay/internal/testsupport/dpfake"
	"github.com/meshrelay/meshrelay/nodeagent"
	"github.com/meshrelay/meshrelay/nodeagent/datapath"
)

// agentsConfig: node agents over memory datapaths in one child process,
// so that their CPU time is their own. Each entry lists one agent's
// declared services.
type agentsConfig struct {
	Etcd   string     `json:"etcd"`
	Agents [][]string `json:"agents"`
}

// agentsReady is what the agents role reports: where it serves /state.
type agentsReady struct {
	URL string `json:"url"`
}

// agentState is one agent's part of /state.
type agentState struct {
	Lines      []string `json:"lines"`   // heldLines of its datapath
	Deleted    []string `json:"deleted"` // frontends deleted so far
	QueueDepth int      `json:"queueDepth"`
	Applies    int64    `json:"applies"`
	Err        string   `json:"err,omitempty"`
}

func runAgents(ctx context.Context, raw []byte, ready func(any)) (any, error) {
	cfg, err := decode[agentsConfig](raw)
	if err != nil {
		return nil, err
	}
	c, err := embedetcd.NewClient([]string{cfg.Etcd})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	type running struct {
		a   *nodeagent.Agent
		rec *dpfake.Recorder
	}
	var agents []running
	errc := make(chan error, len(cfg.Agents))
	for i, svcs := range cfg.Agents {
		opts := nodeagent.Options{NodeName: "node-" + strconv.Itoa(i), Logger: childLogger()}
		if opts.Services, err = parseServices(svcs); err != nil {
			return nil, err
		}
		rec := dpfake.NewRecorder(datapath.NewMemory(datapath.MemoryOptions{Logger: slog.New(slog.DiscardHandler)}))
		a, err := nodeagent.New(c, rec, opts)
		if err != nil {
			return nil, err
		}
		go func() { errc <- a.Run(ctx) }()
		agents = append(agents, running{a, rec})
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := make([]agentState, len(agents))
		for i, ag := range agents {
			lines, _, err := heldLines(r.Context(), ag.rec)
			st := ag.a.Stats()
			out[i] = agentState{Lines: lines, Deleted: ag.rec.DeletedFrontends(), QueueDepth: st.QueueDepth, Applies: st.Applies}
			if err != nil {
				out[i].Err = err.Error()
			}
		}
		json.NewEncoder(w).Encode(out)
	})}
	go srv.Serve(l)
	defer srv.Close()
	ready(agentsReady{URL: "http://" + l.Addr().String() + "/state"})
	select {
	case <-ctx.Done():
	case err := <-errc:
		return nil, err
	}
	for range agents {
		if err := <-errc; err != nil && !errors.Is(err, context.Canceled) {
			return nil, err
		}
	}
	return nil, ctx.Err()
}

// agentsChild is the agents role as the test sees it.
type agentsChild struct {
	*child
	url      string
	declared [][]int
}

// startAgentsChild runs one agent per entry of declared in a child.
func (c *cluster) startAgentsChild(declared [][]int) *agentsChild {
	c.t.Helper()
	cfg := agentsConfig{Etcd: c.etcdURL}
	for _, d := range declared {
		var names []string
		for _, k := range c.keys(d) {
			names = append(names, k.String())
		}
		cfg.Agents = append(cfg.Agents, names)
	}
	ch := startChild(c.t, "agents", "agents", cfg)
	var r agentsReady
	ch.readyInfo(&r)
	return &agentsChild{child: ch, url: r.URL, declared: declared}
}

// state fetches every agent's state from the child.
func (a *agentsChild) state() ([]agentState, error) {
	resp, err := http.Get(a.url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out []agentState
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("%s: %w", a.url, err)
	}
	return out, nil
}

// converged reports how the child's agents differ from the simulator's
// truth (nil when they match).
func (a *agentsChild) converged(c *cluster) error {
	st, err := a.state()
	if err != nil {
		return err
	}
	var errs []error
	for i, s := range st {
		if s.Err != "" {
			errs = append(errs, fmt.Errorf("child agent %d: %s", i, s.Err))
		} else if d := diff(s.Lines, c.truthLines(a.declared[i])); d != "" {
			errs = append(errs, fmt.Errorf("child agent %d: %s", i, d))
		}
	}
	return errors.Join(errs...)
}

// cpuTime is the CPU time (user + system) process pid used so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name (which may hold spaces) start at ") ".
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	const hz = 100 // USER_HZ, 100 on every Linux ABI Go supports
	return time.Duration(utime+stime) * time.Second / hz, nil
}

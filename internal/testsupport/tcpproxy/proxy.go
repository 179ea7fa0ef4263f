package tcpproxy

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
)

// Proxy is a running forwarder.
type Proxy struct {
	l      net.Listener
	target string
	wg     sync.WaitGroup

	mu      sync.Mutex
	down    bool
	latency time.Duration
	conns   map[net.Conn]bool
}

// Start listens on a free 127.0.0.1 port and forwards to target (host:port,
// or a URL such as http://127.0.0.1:2379).
func Start(target string) (*Proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("proxy listen: %w", err)
	}
	target = strings.TrimPrefix(strings.TrimPrefix(target, "http://"), "https://")
	p := &Proxy{l: l, target: target, conns: map[net.Conn]bool{}}
	p.wg.Go(p.serve)
	return p, nil
}

// URL is the proxy's address as an http URL (what etcd clients take).
func (p *Proxy) URL() string { return "http://" + p.l.Addr().String() }

// SetDown cuts every connection and refuses new ones (true), or forwards
// again (false).
func (p *Proxy) SetDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
	if down {
		p.Cut()
	}
}

// SetLatency delays every chunk forwarded from now on, in both directions,
// by d (0 forwards at once again): a slow network or a slow server as its
// clients see it. Order within a connection is kept.
func (p *Proxy) SetLatency(d time.Duration) {
	p.mu.Lock()
	p.latency = d
	p.mu.Unlock()
}

func (p *Proxy) delay() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.latency
}

// Cut closes every forwarded connection; new ones are still forwarded
// unless the proxy is down.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// Close stops listening, cuts every connection and waits for the
// forwarding goroutines.
func (p *Proxy) Close() error {
	err := p.l.Close()
	p.SetDown(true)
	p.wg.Wait()
	return err
}

func (p *Proxy) serve() {
	for {
		in, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		down := p.down
		p.mu.Unlock()
		if down {
			in.Close()
			continue
		}
		out, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil {
			in.Close()
			continue
		}
		p.mu.Lock()
		p.conns[in], p.conns[out] = true, true
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			p.delayedCopy(dst, src)
			dst.Close()
			src.Close()
		}
		p.wg.Go(func() { pipe(out, in) })
		p.wg.Go(func() { pipe(in, out) })
	}
}

// delayedCopy copies src to dst, each chunk written the proxy's latency
// after it was read (as a slow link delivers it): chunks are read as they
// come and written in order, so the delay does not cut the throughput.
func (p *Proxy) delayedCopy(dst, src net.Conn) {
	type chunk struct {
		b  []byte
		at time.Time
	}
	q := make(chan chunk, 1024)
	go func() {
		defer close(q)
		for {
			b := make([]byte, 32<<10)
			n, err := src.Read(b)
			if n > 0 {
				q <- chunk{b[:n], time.Now().Add(p.delay())}
			}
			if err != nil {
				return
			}
		}
	}()
	for c := range q {
		time.Sleep(time.Until(c.at))
		if _, err := dst.Write(c.b); err != nil {
			src.Close()
			break
		}
	}
	for range q { // drain until the reader sees the close
	}
}

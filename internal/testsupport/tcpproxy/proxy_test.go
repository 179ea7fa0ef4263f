package tcpproxy

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

func echoServer(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					c.Write([]byte(sc.Text() + "\n"))
				}
			}()
		}
	}()
	return l.Addr().String()
}

func roundTrip(c net.Conn, msg string) (string, error) {
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(msg + "\n")); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func TestProxyForwardsAndCuts(t *testing.T) {
	p, err := Start("http://" + echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	addr := strings.TrimPrefix(p.URL(), "http://")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := roundTrip(c, "hello"); err != nil || got != "hello" {
		t.Fatalf("through the proxy: %q %v", got, err)
	}
	p.SetDown(true)
	if _, err := roundTrip(c, "again"); err == nil {
		t.Fatal("connection survived SetDown(true)")
	}
	if c2, err := net.Dial("tcp", addr); err == nil {
		if _, err := roundTrip(c2, "x"); err == nil {
			t.Fatal("a new connection was forwarded while down")
		}
		c2.Close()
	}
	p.SetDown(false)
	c4, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(c4, "x"); err != nil {
		t.Fatal(err)
	}
	p.Cut()
	if _, err := roundTrip(c4, "y"); err == nil {
		t.Fatal("connection survived Cut")
	}
	c3, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c3.Close()
	if got, err := roundTrip(c3, "back"); err != nil || got != "back" {
		t.Fatalf("after SetDown(false): %q %v", got, err)
	}
}

func TestProxyLatency(t *testing.T) {
	p, err := Start(echoServer(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c, err := net.Dial("tcp", strings.TrimPrefix(p.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const d = 100 * time.Millisecond
	p.SetLatency(d)
	start := time.Now()
	if got, err := roundTrip(c, "slow"); err != nil || got != "slow" {
		t.Fatalf("through the slow proxy: %q %v", got, err)
	}
	// Both directions are delayed: a round trip takes at least twice d.
	if took := time.Since(start); took < 2*d {
		t.Fatalf("round trip took %v with %v latency each way", took, d)
	}
	p.SetLatency(0)
	if got, err := roundTrip(c, "fast"); err != nil || got != "fast" {
		t.Fatalf("after SetLatency(0): %q %v", got, err)
	}
}

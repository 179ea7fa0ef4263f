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

package vaulttest

import (
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy is a loopback TCP proxy in front of a server, to simulate outages
// without restarting it (a -dev Vault loses everything on restart).
type Proxy struct {
	target string // host:port
	scheme string // "http://" or "https://" when target was given as a URL, else ""
	ln     net.Listener

	mu    sync.Mutex
	state proxyState
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup

	accepted atomic.Int64 // connections accepted since the start
}

type proxyState int

const (
	forwarding proxyState = iota
	cut                   // connections are closed as soon as they are accepted
	stalled               // connections are accepted and never answered
)

// NewProxy starts a proxy to target, given as host:port or as a URL
// (http://host:port, or https://host:port: the proxy forwards the bytes,
// TLS passes through). It is closed when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p := &Proxy{target: target, conns: make(map[net.Conn]struct{})}
	for _, scheme := range []string{"http://", "https://"} {
		if rest, ok := strings.CutPrefix(target, scheme); ok {
			p.scheme, p.target = scheme, strings.TrimSuffix(rest, "/")
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("vaulttest: proxy listen: %v", err)
	}
	p.ln = ln
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's address, in the form target was given in: a URL
// (http(s)://127.0.0.1:port) or 127.0.0.1:port.
func (p *Proxy) Addr() string { return p.scheme + p.ln.Addr().String() }

// Accepted is how many connections the proxy has accepted since it
// started: a client that reuses its connections stops adding to it.
func (p *Proxy) Accepted() int64 { return p.accepted.Load() }

// Cut closes every open connection and closes each new one at once, as a
// server that went away would: clients fail immediately.
func (p *Proxy) Cut() { p.setState(cut) }

// Stall closes every open connection and then accepts new ones without ever
// answering, as an unreachable host would: clients fail only by timeout.
func (p *Proxy) Stall() { p.setState(stalled) }

// Restore closes every open (cut or stalled) connection and forwards new
// ones to the target again.
func (p *Proxy) Restore() { p.setState(forwarding) }

func (p *Proxy) setState(s proxyState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = s
	for c := range p.conns {
		c.Close()
	}
}

func (p *Proxy) close() {
	p.ln.Close()
	p.setState(cut)
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // listener closed
		}
		p.accepted.Add(1)
		p.mu.Lock()
		state := p.state
		if state == cut {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.wg.Add(1)
		p.mu.Unlock()
		if state == stalled {
			go p.hold(c)
		} else {
			go p.forward(c)
		}
	}
}

func (p *Proxy) forget(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	c.Close()
}

// hold keeps c open, reading and dropping what arrives, until it is closed.
func (p *Proxy) hold(c net.Conn) {
	defer p.wg.Done()
	defer p.forget(c)
	_, _ = io.Copy(io.Discard, c)
}

func (p *Proxy) forward(c net.Conn) {
	defer p.wg.Done()
	defer p.forget(c)
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		return
	}
	defer up.Close()
	// Closing c (Cut, Stall, Restore) makes the first copy return; closing
	// up then ends the other.
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(up, c)
		up.Close()
		close(done)
	}()
	_, _ = io.Copy(c, up)
	c.Close()
	<-done
}

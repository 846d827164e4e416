// Package redisproxy is a loopback proxy in front of a Redis server for
// tests that need a connection to misbehave at a chosen moment: a write
// held, a reply dropped, a connection ended after the server ran a
// command. Whatever the client is (go-redis, a connection of keyalert's
// own, the plugin), it only needs the proxy's address.
package redisproxy

import (
	"net"
	"sync/atomic"
	"testing"
)

// Action is what happens to a chunk of bytes after a hook saw it.
type Action int

const (
	Forward Action = iota // pass it on
	Drop                  // swallow it
	Close                 // end the connection (both sides) without passing it
)

// Conn is one proxied connection, for hooks that keep state per
// connection.
type Conn struct {
	// Marked is free for the hooks' use (e.g. "drop what Redis answers from
	// now on").
	Marked atomic.Bool
}

// Hooks see the bytes as read from one side, before they are passed to the
// other; they may block (a write held).
type Hooks struct {
	// ToServer sees what a client writes; nil forwards everything.
	ToServer func(c *Conn, b []byte) Action
	// ToClient sees what the server answers; nil forwards everything.
	ToClient func(c *Conn, b []byte) Action
}

// Proxy forwards every connection to the server through its hooks.
type Proxy struct {
	ln     net.Listener
	target string
	h      Hooks
}

// Start listens on a free loopback port until the test ends.
func Start(t testing.TB, target string, h Hooks) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{ln: ln, target: target, h: h}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(c)
		}
	}()
	return p
}

// Addr is the proxy's address.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

func (p *Proxy) serve(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	c := &Conn{}
	go pipe(c, server, client, p.h.ToClient)
	pipe(c, client, server, p.h.ToServer)
}

// pipe copies from src to dst through hook until either side ends, then
// closes both.
func pipe(c *Conn, src, dst net.Conn, hook func(*Conn, []byte) Action) {
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			act := Forward
			if hook != nil {
				act = hook(c, buf[:n])
			}
			switch act {
			case Close:
				return
			case Forward:
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
		}
		if err != nil {
			return
		}
	}
}

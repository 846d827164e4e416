package sendonce_test

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyalert/keyalert/pkg/sendonce"
	"github.com/redis/go-redis/v9"
)

// hung is a Redis that reads commands and never answers: every call times
// out. It counts the EVAL/EVALSHA commands that reach it.
func hung(t *testing.T) (addr string, evals *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	evals = new(atomic.Int64)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					cmd, err := readCommand(r)
					if err != nil {
						return
					}
					if cmd == "EVAL" || cmd == "EVALSHA" {
						evals.Add(1)
						continue // never answered
					}
					// The connection's handshake (HELLO, CLIENT …): an
					// error go-redis accepts, so it goes on to the command.
					if _, err := c.Write([]byte("-ERR unknown command\r\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), evals
}

func TestCommandsTimingOutAreSentOnce(t *testing.T) {
	cases := []struct {
		name     string
		pipeline bool
		once     bool
		want     func(n int64) bool
	}{
		{"plain command is resent by go-redis", false, false, func(n int64) bool { return n > 1 }},
		{"sendonce command is sent once", false, true, func(n int64) bool { return n == 1 }},
		{"pipeline holding a sendonce command is sent once", true, true, func(n int64) bool { return n == 1 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr, evals := hung(t)
			rdb := redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true,
				ReadTimeout: 100 * time.Millisecond, MaxRetries: 3,
				MinRetryBackoff: time.Millisecond, MaxRetryBackoff: 2 * time.Millisecond})
			t.Cleanup(func() { rdb.Close() })
			ctx := context.Background()
			keys, args := []string{"k"}, []any{1}
			switch {
			case tc.pipeline:
				pipe := rdb.Pipeline()
				sendonce.Eval(ctx, pipe, "eval", "return 1", keys, args)
				_, _ = pipe.Exec(ctx)
			case tc.once:
				_ = sendonce.Eval(ctx, rdb, "eval", "return 1", keys, args).Err()
			default:
				_ = rdb.Eval(ctx, "return 1", keys, args...).Err()
			}
			time.Sleep(50 * time.Millisecond) // the last write's bytes reach the listener
			if n := evals.Load(); !tc.want(n) {
				t.Errorf("EVAL reached the server %d times", n)
			}
		})
	}
}

// readCommand reads one RESP array command and returns its name, upper case.
func readCommand(r *bufio.Reader) (string, error) {
	l, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	n, _ := strconv.Atoi(strings.TrimSpace(l[1:]))
	name := ""
	for i := range n {
		if _, err := r.ReadString('\n'); err != nil { // $len
			return "", err
		}
		arg, err := r.ReadString('\n')
		if err != nil {
			return "", err
		}
		if i == 0 {
			name = strings.ToUpper(strings.TrimSpace(arg))
		}
	}
	return name, nil
}

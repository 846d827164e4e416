package respconn_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/respconn"
	"github.com/redis/go-redis/v9"
)

func dial(t *testing.T, o *redis.Options) *respconn.Conn {
	t.Helper()
	c, err := respconn.Dial(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func command(c *respconn.Conn, args ...any) {
	c.Command(len(args))
	for _, a := range args {
		c.Arg(a)
	}
}

// Commands written one after the other, flushed once, answer in order; the
// replies read as go-redis's Result gives them, arguments of every kind
// written as go-redis writes them.
func TestPipelinedRepliesAsGoRedisGivesThem(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	c := dial(t, rdb.Options())
	script := `return {ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[2]) + 1, {'nested', 7}, redis.error_reply('ERR inside')}`
	args := []any{"s", 42, int64(-7), 2.5, true, []byte("b\r\nytes")}
	cmds := [][]any{
		{"SET", "k", "v"},
		{"GET", "k"},
		{"GET", "missing"},
		{"INCR", "n"},
		append([]any{"EVAL", script, 0}, args...),
		{"HINCRBY", "k", "f", 1},
	}
	for _, cmd := range cmds {
		command(c, cmd...)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	var got []any
	var errs []error
	for range cmds {
		v, err := c.Read()
		got, errs = append(got, v), append(errs, err)
	}
	rdb.Del(ctx, "k", "n")
	for i, cmd := range cmds {
		v, err := rdb.Do(ctx, cmd...).Result()
		if errors.Is(err, redis.Nil) {
			v, err = nil, nil
		}
		if fmt.Sprint(err) != fmt.Sprint(errs[i]) {
			t.Errorf("%v: error %v, go-redis %v", cmd[0], errs[i], err)
		}
		if fmt.Sprintf("%#v", normal(got[i])) != fmt.Sprintf("%#v", normal(v)) {
			t.Errorf("%v: %#v, go-redis %#v", cmd[0], got[i], v)
		}
	}
	var rerr redis.Error
	if !errors.As(errs[len(errs)-1], &rerr) || !strings.HasPrefix(rerr.Error(), "WRONGTYPE") {
		t.Errorf("error reply %v is not a redis.Error", errs[len(errs)-1])
	}
}

// normal turns error values inside arrays into their text, as both sides'
// error types differ.
func normal(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]any, len(x))
		for i := range x {
			out[i] = normal(x[i])
		}
		return out
	case error:
		return "error: " + x.Error()
	}
	return v
}

// ReadRaw gives the reply's bytes exactly as Redis sent them, long strings
// and nested arrays included; an error reply is an Error.
func TestReadRawIsTheReplyAsSent(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	big := strings.Repeat("x", 200000)
	rdb.XAdd(ctx, &redis.XAddArgs{Stream: "s", ID: "1-1", Values: []string{"a", "1", "odd\r\nname", big}})
	rdb.XAdd(ctx, &redis.XAddArgs{Stream: "s", ID: "2-1", Values: []string{"b", ""}})
	rdb.Set(ctx, "str", "v", 0)
	c := dial(t, rdb.Options())
	command(c, "XRANGE", "s", "-", "+")
	command(c, "XRANGE", "str", "-", "+")
	command(c, "XRANGE", "s", "(2-1", "+")
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	raw, err := c.ReadRaw(nil)
	if err != nil {
		t.Fatal(err)
	}
	want := "*2\r\n*2\r\n$3\r\n1-1\r\n*4\r\n$1\r\na\r\n$1\r\n1\r\n$9\r\nodd\r\nname\r\n$200000\r\n" + big + "\r\n" +
		"*2\r\n$3\r\n2-1\r\n*2\r\n$1\r\nb\r\n$0\r\n\r\n"
	if string(raw) != want {
		t.Errorf("raw reply of %d bytes differs from the %d expected", len(raw), len(want))
	}
	raw, err = c.ReadRaw(raw[:0])
	var e respconn.Error
	if !errors.As(err, &e) || !strings.HasPrefix(string(e), "WRONGTYPE") || len(raw) != 0 {
		t.Errorf("error reply: %q, %v", raw, err)
	}
	if raw, err = c.ReadRaw(raw[:0]); err != nil || string(raw) != "*0\r\n" {
		t.Errorf("empty range: %q, %v", raw, err)
	}
}

// Dial authenticates with the client's credentials and selects its
// database.
func TestDialAuthenticatesAndSelects(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := context.Background()
	if err := rdb.ConfigSet(ctx, "requirepass", "s3cret").Err(); err != nil {
		t.Fatal(err)
	}
	o := rdb.Options()
	o.Password, o.DB = "s3cret", 3
	authed := redis.NewClient(o)
	t.Cleanup(func() { authed.Close() })
	authed.Set(ctx, "where", "db3", 0)
	c := dial(t, authed.Options())
	command(c, "GET", "where")
	c.Flush()
	if v, err := c.Read(); err != nil || v != "db3" {
		t.Errorf("GET in db 3: %v, %v", v, err)
	}
	o.Password = "wrong"
	if _, err := respconn.Dial(ctx, o); err == nil || !strings.Contains(err.Error(), "AUTH") {
		t.Errorf("wrong password: %v, want an AUTH error", err)
	}
}

// A server that stops answering makes a read fail after the read timeout,
// not hang; malformed replies are protocol errors.
func TestHungAndMalformedReplies(t *testing.T) {
	for _, tc := range []struct {
		name, reply string
		want        error
	}{
		{"no reply", "", nil},
		{"unknown type", "?x\r\n", respconn.ErrProtocol},
		{"bad length", "$x\r\n", respconn.ErrProtocol},
		{"string without CRLF", "$1\r\nabc", respconn.ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				nc, err := ln.Accept()
				if err != nil {
					return
				}
				defer nc.Close()
				bufio.NewReader(nc).ReadString('\n')
				nc.Write([]byte(tc.reply))
				time.Sleep(2 * time.Second)
			}()
			c := dial(t, &redis.Options{Addr: ln.Addr().String(), ReadTimeout: 200 * time.Millisecond})
			command(c, "PING")
			c.Flush()
			t0 := time.Now()
			_, err = c.Read()
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
			if d := time.Since(t0); d > time.Second {
				t.Errorf("read returned after %v", d)
			}
		})
	}
}

// piped is a connection whose server sends in and hangs up.
func piped(t *testing.T, in []byte) *respconn.Conn {
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close() })
	go func() {
		defer b.Close()
		b.Write(in)
	}()
	return respconn.New(a, time.Second)
}

// FuzzReadRaw: any bytes give a reply or an error, never a panic, and a
// reply read raw is a prefix of the input.
func FuzzReadRaw(f *testing.F) {
	f.Add([]byte("*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n"))
	f.Add([]byte("-ERR x\r\n"))
	f.Add([]byte("$-1\r\n"))
	f.Add([]byte("*-1\r\n:12\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		c := piped(t, in)
		raw, err := c.ReadRaw(nil)
		if err == nil && !bytes.HasPrefix(in, raw) {
			t.Fatalf("raw %q is not a prefix of %q", raw, in)
		}
	})
}

// FuzzRead: any bytes give a value or an error, never a panic.
func FuzzRead(f *testing.F) {
	f.Add([]byte("*3\r\n$1\r\n1\r\n*2\r\n$1\r\n1\r\n-ERR e\r\n*0\r\n"))
	f.Add([]byte(":x\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		c := piped(t, in)
		v, err := c.Read()
		if err == nil && reflect.ValueOf(v).Kind() == reflect.Invalid && !bytes.HasPrefix(in, []byte("$-1")) && !bytes.HasPrefix(in, []byte("*-1")) {
			t.Fatalf("nil value without an error from %q", in)
		}
	})
}

// A command written long after the last flush, larger than the buffer (so
// part of it is sent while it is written), is not cut short by the write
// timeout of the flush before.
func TestLargeCommandAfterAnIdleSpell(t *testing.T) {
	rdb := redistest.Start(t).Client()
	o := *rdb.Options()
	o.WriteTimeout = 100 * time.Millisecond
	c := dial(t, &o)
	command(c, "PING")
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	command(c, "SET", "big", strings.Repeat("v", 1<<20))
	if err := c.Flush(); err != nil {
		t.Fatalf("flush after an idle spell: %v", err)
	}
	if v, err := c.Read(); err != nil || v != "OK" {
		t.Fatalf("SET: %v, %v", v, err)
	}
}

// Package respconn is a Redis connection of keyalert's own, beside go-redis,
// for the ingest hot path. go-redis sends a command and waits for its reply
// before the next on a connection, copies a reply one bulk string at a time
// and boxes every argument; here commands are written into the buffer as
// they come and flushed when the caller says, so several apply scripts are
// in flight on one connection (Redis never waits for keyalertd between two,
// and their order is the connection's), arguments are written straight into
// the buffer, and a reply is read whole into one buffer that the caller
// parses. It speaks RESP2 (no HELLO) and is not safe for concurrent use:
// one goroutine writes, one reads.
package respconn

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// bufSize is the size of the read and write buffers.
const bufSize = 64 << 10

// Error is an error reply. It is a redis.Error, as go-redis's are.
type Error string

func (e Error) Error() string { return string(e) }

// RedisError marks Error as a Redis reply (redis.Error).
func (Error) RedisError() {}

// ErrProtocol is wrapped by errors about a reply that is not RESP2.
var ErrProtocol = errors.New("respconn: not a RESP2 reply")

// Conn is one connection.
type Conn struct {
	nc           net.Conn
	r            *bufio.Reader
	w            *bufio.Writer
	num          []byte
	readTimeout  time.Duration // 0: none
	writeTimeout time.Duration
}

// Dial connects as a go-redis client with options o would (its dialer,
// TLS, credentials, database, timeouts).
func Dial(ctx context.Context, o *redis.Options) (*Conn, error) {
	dctx := ctx
	if o.DialTimeout > 0 {
		var cancel context.CancelFunc
		dctx, cancel = context.WithTimeout(ctx, o.DialTimeout)
		defer cancel()
	}
	network := o.Network
	if network == "" {
		network = "tcp"
	}
	var nc net.Conn
	var err error
	if o.Dialer != nil { // a client's options carry go-redis's dialer, TLS included
		nc, err = o.Dialer(dctx, network, o.Addr)
	} else {
		d := net.Dialer{KeepAlive: 5 * time.Minute}
		nc, err = d.DialContext(dctx, network, o.Addr)
		if err == nil && o.TLSConfig != nil {
			tc := tls.Client(nc, o.TLSConfig.Clone())
			if err = tc.HandshakeContext(dctx); err != nil {
				nc.Close()
			}
			nc = tc
		}
	}
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", o.Addr, err)
	}
	// go-redis's options after its defaults: > 0 a timeout, 0 none, < 0
	// deadlines left alone.
	c := New(nc, max(o.ReadTimeout, 0))
	c.writeTimeout = max(o.WriteTimeout, 0)
	user, pass := o.Username, o.Password
	switch {
	case o.CredentialsProviderContext != nil:
		if user, pass, err = o.CredentialsProviderContext(dctx); err != nil {
			nc.Close()
			return nil, fmt.Errorf("credentials for %s: %w", o.Addr, err)
		}
	case o.CredentialsProvider != nil:
		user, pass = o.CredentialsProvider()
	}
	var setup [][]string
	switch {
	case pass != "" && user != "":
		setup = append(setup, []string{"AUTH", user, pass})
	case pass != "":
		setup = append(setup, []string{"AUTH", pass})
	}
	if o.DB != 0 {
		setup = append(setup, []string{"SELECT", strconv.Itoa(o.DB)})
	}
	for _, cmd := range setup {
		c.Command(len(cmd))
		for _, a := range cmd {
			c.String(a)
		}
		if err := c.Flush(); err != nil {
			c.Close()
			return nil, fmt.Errorf("%s on %s: %w", cmd[0], o.Addr, err)
		}
		if _, err := c.Read(); err != nil {
			c.Close()
			return nil, fmt.Errorf("%s on %s: %w", cmd[0], o.Addr, err)
		}
	}
	return c, nil
}

// New wraps a connection already set up, reads bounded by readTimeout (0:
// none).
func New(nc net.Conn, readTimeout time.Duration) *Conn {
	return &Conn{nc: nc, r: bufio.NewReaderSize(nc, bufSize), w: bufio.NewWriterSize(nc, bufSize), readTimeout: readTimeout}
}

// Close closes the connection; replies not read are lost.
func (c *Conn) Close() error { return c.nc.Close() }

// Command starts a command of n arguments (its name included); the
// arguments follow with String, Arg. The write timeout runs from here: a
// command larger than the buffer is sent while it is written.
func (c *Conn) Command(n int) {
	if c.writeTimeout > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	}
	c.line('*', int64(n))
}

// String writes one argument.
func (c *Conn) String(s string) {
	c.line('$', int64(len(s)))
	c.w.WriteString(s)
	c.w.WriteString("\r\n")
}

// Arg writes one argument as go-redis would: strings and byte slices as
// they are, numbers in decimal, booleans as 1 and 0.
func (c *Conn) Arg(a any) {
	switch v := a.(type) {
	case string:
		c.String(v)
	case []byte:
		c.line('$', int64(len(v)))
		c.w.Write(v)
		c.w.WriteString("\r\n")
	case int:
		c.number(strconv.AppendInt(c.num[:0], int64(v), 10))
	case int64:
		c.number(strconv.AppendInt(c.num[:0], v, 10))
	case int32:
		c.number(strconv.AppendInt(c.num[:0], int64(v), 10))
	case uint64:
		c.number(strconv.AppendUint(c.num[:0], v, 10))
	case uint32:
		c.number(strconv.AppendUint(c.num[:0], uint64(v), 10))
	case float64:
		c.number(appendFloat(c.num[:0], v))
	case bool:
		if v {
			c.String("1")
		} else {
			c.String("0")
		}
	case nil:
		c.String("")
	default:
		c.String(fmt.Sprint(v))
	}
}

func appendFloat(b []byte, f float64) []byte {
	switch {
	case math.IsInf(f, 1):
		return append(b, "+inf"...)
	case math.IsInf(f, -1):
		return append(b, "-inf"...)
	}
	return strconv.AppendFloat(b, f, 'f', -1, 64)
}

func (c *Conn) number(b []byte) {
	c.num = b
	c.line('$', int64(len(b)))
	c.w.Write(b)
	c.w.WriteString("\r\n")
}

func (c *Conn) line(t byte, n int64) {
	c.w.WriteByte(t)
	var d [20]byte
	c.w.Write(strconv.AppendInt(d[:0], n, 10))
	c.w.WriteString("\r\n")
}

// Buffered is how many bytes are written and not yet flushed.
func (c *Conn) Buffered() int { return c.w.Buffered() }

// Flush sends what is buffered.
func (c *Conn) Flush() error {
	if c.writeTimeout > 0 {
		c.nc.SetWriteDeadline(time.Now().Add(c.writeTimeout))
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}

func (c *Conn) deadline() {
	if c.readTimeout > 0 {
		c.nc.SetReadDeadline(time.Now().Add(c.readTimeout))
	}
}

// ReadRaw appends the next reply, whole and as sent, to dst. An error
// reply is returned as an Error (and not appended).
func (c *Conn) ReadRaw(dst []byte) ([]byte, error) {
	c.deadline()
	start := len(dst)
	dst, err := c.raw(dst)
	if err == nil && len(dst) > start && dst[start] == '-' {
		return dst[:start], Error(dst[start+1 : len(dst)-2])
	}
	return dst, err
}

func (c *Conn) raw(dst []byte) ([]byte, error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return dst, fmt.Errorf("read: %w", err)
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return dst, fmt.Errorf("%w: line %q", ErrProtocol, line)
	}
	dst = append(dst, line...)
	switch line[0] {
	case '+', '-', ':':
		return dst, nil
	case '$':
		n, err := length(line)
		if err != nil || n < 0 {
			return dst, err
		}
		at := len(dst)
		dst = grow(dst, n+2)
		if _, err := io.ReadFull(c.r, dst[at:at+n+2]); err != nil {
			return dst[:at], fmt.Errorf("read: %w", err)
		}
		if dst[at+n] != '\r' || dst[at+n+1] != '\n' {
			return dst, fmt.Errorf("%w: string not followed by CRLF", ErrProtocol)
		}
		return dst, nil
	case '*':
		n, err := length(line)
		if err != nil {
			return dst, err
		}
		for i := 0; i < n; i++ {
			if dst, err = c.raw(dst); err != nil {
				return dst, err
			}
		}
		return dst, nil
	}
	return dst, fmt.Errorf("%w: type %q", ErrProtocol, line[0])
}

// grow extends dst by n bytes.
func grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) < n {
		nd := make([]byte, len(dst), 2*cap(dst)+n)
		copy(nd, dst)
		dst = nd
	}
	return dst[:len(dst)+n]
}

// length parses the number of a "$n\r\n" or "*n\r\n" line: -1 is a null.
func length(line []byte) (int, error) {
	n, err := strconv.Atoi(string(line[1 : len(line)-2]))
	if err != nil || n < -1 || n > 512<<20 {
		return 0, fmt.Errorf("%w: length %q", ErrProtocol, line[:len(line)-2])
	}
	return n, nil
}

// Read reads the next reply as go-redis's Cmd.Result gives it: a string,
// an int64, a []any of those, or nil for a null. An error reply is
// returned as an Error.
func (c *Conn) Read() (any, error) {
	c.deadline()
	return c.value()
}

func (c *Conn) value() (any, error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if len(line) < 3 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("%w: line %q", ErrProtocol, line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+':
		return string(body), nil
	case '-':
		return nil, Error(body)
	case ':':
		n, err := strconv.ParseInt(string(body), 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: integer %q", ErrProtocol, body)
		}
		return n, nil
	case '$':
		n, err := length(line)
		if err != nil || n < 0 {
			return nil, err
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, b); err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		if b[n] != '\r' || b[n+1] != '\n' {
			return nil, fmt.Errorf("%w: string not followed by CRLF", ErrProtocol)
		}
		return string(b[:n]), nil
	case '*':
		n, err := length(line)
		if err != nil || n < 0 {
			return nil, err
		}
		out := make([]any, n)
		// An error inside an array (a script's table holding one) is a
		// value, as in go-redis, not the reply's error.
		for i := range out {
			v, err := c.value()
			var e Error
			if errors.As(err, &e) {
				v, err = e, nil
			}
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	}
	return nil, fmt.Errorf("%w: type %q", ErrProtocol, line[0])
}

package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/keyalert/keyalert/harness/flbhost"
	"github.com/keyalert/keyalert/pkg/multiline"
	"github.com/keyalert/keyalert/plugin/chunk"
)

// props collects repeated -p Key=Value flags, like fluent-bit's -p.
type props map[string]string

func (p props) String() string { return fmt.Sprint(map[string]string(p)) }
func (p props) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok || k == "" {
		return fmt.Errorf("-p %q: want Key=Value", s)
	}
	p[k] = v
	return nil
}

// feedCmd follows a log file like Fluent Bit's tail input (with a Java-style
// multiline rule: indented lines and "Caused by:" join the record before them)
// and flushes one chunk per interval into the real plugin through the C host.
// A chunk the plugin answers RETRY for is flushed again on the next tick, as
// Fluent Bit would.
func feedCmd(args []string) error {
	fs := flag.NewFlagSet("feed", flag.ContinueOnError)
	p := props{}
	fs.Var(p, "p", "plugin property Key=Value (repeatable), e.g. -p Redis_URL=redis://127.0.0.1:6379/0")
	tag := fs.String("tag", "app.demo", "Fluent Bit tag of the records")
	interval := fs.Duration("flush", time.Second, "flush interval")
	follow := fs.Bool("follow", true, "keep reading as the file grows (false: stop at end of file)")
	so := fs.String("so", "", "plugin library (default build/keyalert.so)")
	flbhostBin := fs.String("flbhost", "", "the Fluent Bit stand-in binary (default build/flbhost)")
	host := fs.String("host", "", "host name of the records, as the plugin's Hostname (as loggen -host; -p Hostname= wins)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *host != "" {
		// -host once named the stand-in binary; a path is still taken so.
		if st, err := os.Stat(*host); err == nil && !st.IsDir() && strings.Contains(*host, "/") {
			fmt.Fprintln(os.Stderr, "keyalert-demo feed: -host as the stand-in binary is deprecated, use -flbhost; -host names the records' host")
			*flbhostBin = *host
		} else if _, set := p["Hostname"]; !set {
			p["Hostname"] = *host
		}
	}
	if fs.NArg() != 1 {
		return errors.New("want exactly one log file")
	}
	if *so == "" || *flbhostBin == "" {
		dso, dhost, err := flbhost.Paths()
		if err != nil {
			return err
		}
		if *so == "" {
			*so = dso
		}
		if *flbhostBin == "" {
			*flbhostBin = dhost
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	h, err := flbhost.Start(ctx, *so, *flbhostBin)
	if err != nil {
		return err
	}
	defer h.Close()
	if rc, err := h.Init("feed", p); err != nil || rc != flbhost.OK {
		return fmt.Errorf("plugin init returned %d (%v); see the plugin's log above", rc, err)
	}
	defer h.Exit("feed")

	f, err := waitOpen(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var (
		pending []byte // chunk awaiting a successful flush
		record  strings.Builder
		partial string
	)
	flushRecord := func(now time.Time) {
		if record.Len() == 0 {
			return
		}
		pending, _ = chunk.AppendEvent(pending, chunk.FormatV2, now, chunk.EventTime, map[string]any{"log": record.String()})
		record.Reset()
	}
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for {
		now := time.Now()
		readAny := false
		for {
			line, err := r.ReadString('\n')
			if err == io.EOF {
				partial += line
				break
			}
			if err != nil {
				return err
			}
			line = strings.TrimRight(partial+line, "\r\n")
			partial = ""
			readAny = true
			if multiline.Continues(line) && record.Len() > 0 {
				record.WriteByte('\n')
				record.WriteString(line)
				continue
			}
			flushRecord(now)
			record.WriteString(line)
		}
		if !readAny {
			// A quiet tick ends the record being assembled: no more
			// continuation lines are coming for it.
			flushRecord(now)
		}
		if !*follow {
			if partial != "" {
				flushRecord(now)
				record.WriteString(partial)
			}
			flushRecord(now)
		}
		if len(pending) > 0 {
			rc, err := h.Flush("feed", *tag, pending)
			switch {
			case err != nil:
				return err
			case rc == flbhost.OK:
				pending = pending[:0]
			case rc == flbhost.Retry:
				slog.Warn("plugin asked to retry the chunk; will flush it again", "bytes", len(pending))
			default:
				slog.Error("plugin dropped a chunk", "rc", rc, "bytes", len(pending))
				pending = pending[:0]
			}
		}
		if !*follow && len(pending) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func waitOpen(ctx context.Context, path string) (*os.File, error) {
	for {
		f, err := os.Open(path)
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			return f, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Package loggen writes a realistic web-application log for demos and load
// tests: steady INFO/WARN traffic from a few request handlers with periodic
// bursts of Java exceptions (with stack traces) and "Disk Full" errors, so a
// keyword rule has something to fire on.
package loggen

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// Options shapes the stream.
type Options struct {
	Rate       int           // lines per second of normal traffic
	BurstEvery time.Duration // time between bursts
	BurstLines int           // exceptions per burst
	Host       string        // written into each line
	Seed       uint64        // 0 = random
}

// DefaultOptions gives a stream that trips a "5 in 5m" rule within a minute.
func DefaultOptions() Options {
	return Options{Rate: 20, BurstEvery: 30 * time.Second, BurstLines: 8, Host: "web-1"}
}

var paths = []string{"/api/cart", "/api/checkout", "/login", "/search", "/static/app.js", "/api/orders"}

// Run writes lines to w until ctx ends or limit lines were written (0 = no
// limit). now supplies timestamps, so a test can run it without sleeping by
// passing a fake clock and a zero tick.
func Run(ctx context.Context, w io.Writer, o Options, limit int, tick time.Duration, now func() time.Time) (int, error) {
	if o.Rate <= 0 {
		return 0, fmt.Errorf("loggen: rate %d must be positive", o.Rate)
	}
	seed := o.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	bw := bufio.NewWriter(w)
	written := 0
	emit := func(format string, a ...any) error {
		if limit > 0 && written >= limit {
			return io.EOF
		}
		written++
		_, err := fmt.Fprintf(bw, format, a...)
		return err
	}
	var ticker *time.Ticker
	if tick > 0 {
		ticker = time.NewTicker(tick)
		defer ticker.Stop()
	}
	lastBurst := now()
	for second := 0; ; second++ {
		ts := now().UTC().Format("2006-01-02 15:04:05.000")
		for i := 0; i < o.Rate; i++ {
			var err error
			switch p := paths[r.IntN(len(paths))]; {
			case r.IntN(50) == 0:
				err = emit("%s WARN  [%s] http-nio-8080-exec-%d slow request %s took %dms\n", ts, o.Host, r.IntN(200), p, 900+r.IntN(4000))
			default:
				err = emit("%s INFO  [%s] http-nio-8080-exec-%d GET %s 200 %dms\n", ts, o.Host, r.IntN(200), p, 2+r.IntN(80))
			}
			if err != nil {
				return written, flush(bw, err)
			}
		}
		if o.BurstEvery > 0 && now().Sub(lastBurst) >= o.BurstEvery {
			lastBurst = now()
			for i := 0; i < o.BurstLines; i++ {
				if err := emitException(emit, ts, o.Host, r); err != nil {
					return written, flush(bw, err)
				}
			}
			if r.IntN(2) == 0 {
				if err := emit("%s ERROR [%s] storage: write /var/lib/app/cache/%08x failed: Disk Full (no space left on device)\n", ts, o.Host, r.Uint32()); err != nil {
					return written, flush(bw, err)
				}
			}
		}
		if err := bw.Flush(); err != nil {
			return written, err
		}
		if ticker == nil {
			if ctx.Err() != nil {
				return written, nil
			}
			continue
		}
		select {
		case <-ctx.Done():
			return written, nil
		case <-ticker.C:
		}
	}
}

func emitException(emit func(string, ...any) error, ts, host string, r *rand.Rand) error {
	kinds := []string{"java.lang.NullPointerException", "java.lang.IllegalStateException: pool exhausted", "java.sql.SQLTransientConnectionException: timeout after 30000ms"}
	if err := emit("%s ERROR [%s] http-nio-8080-exec-%d request failed: %s\n", ts, host, r.IntN(200), kinds[r.IntN(len(kinds))]); err != nil {
		return err
	}
	for _, f := range []string{"com.shop.cart.CartService.add(CartService.java:88)", "com.shop.api.CartController.post(CartController.java:41)", "org.apache.catalina.core.StandardWrapperValve.invoke(StandardWrapperValve.java:197)"} {
		if err := emit("\tat %s\n", f); err != nil {
			return err
		}
	}
	return nil
}

func flush(bw *bufio.Writer, err error) error {
	ferr := bw.Flush()
	if err == io.EOF {
		return ferr
	}
	return err
}

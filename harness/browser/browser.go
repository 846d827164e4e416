// Package browser drives a real headless Chromium (Debian's `chromium`
// package, installed by `make chromium`) from tests through the DevTools
// protocol (chromedp), and records every console error, uncaught exception
// and Content-Security-Policy violation of the pages it shows, so a test can
// fail on any of them.
//
// A missing Chromium skips the test with the reason, unless
// KEYALERT_REQUIRE_CHROMIUM=1 (set by `make test`), which fails it instead.
package browser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// Binary finds Chromium: $KEYALERT_CHROMIUM, then chromium or
// chromium-browser on PATH, then /usr/bin/chromium.
func Binary() (string, error) {
	if p := os.Getenv("KEYALERT_CHROMIUM"); p != "" {
		return p, nil
	}
	for _, n := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
	}
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium", nil
	}
	return "", fmt.Errorf("chromium not found: install it with `make chromium` (apt-get install chromium) or set KEYALERT_CHROMIUM")
}

// Browser is one headless Chromium with one tab.
type Browser struct {
	Ctx context.Context // the tab; pass it to chromedp.Run

	mu       sync.Mutex
	problems []string
	// Transferred sums the encoded (on the wire) bytes of finished
	// responses since the last ResetTransferred.
	transferred int64
}

// Start launches Chromium at width × height CSS pixels; it is closed when
// the test ends.
func Start(tb testing.TB, width, height int) *Browser {
	tb.Helper()
	bin, err := Binary()
	if err != nil {
		if os.Getenv("KEYALERT_REQUIRE_CHROMIUM") == "1" {
			tb.Fatal(err)
		}
		tb.Skip(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.WindowSize(width, height),
		chromedp.UserDataDir(tb.TempDir()),
		chromedp.Flag("no-sandbox", os.Geteuid() == 0), // Chromium refuses root without it
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelT := chromedp.NewContext(actx)
	b := &Browser{Ctx: ctx}
	listen := func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert {
				var parts []string
				for _, a := range e.Args {
					parts = append(parts, strings.Trim(string(a.Value), `"`)+a.Description)
				}
				b.problem("console.%s: %s", e.Type, strings.Join(parts, " "))
			}
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			b.problem("uncaught exception: %s (%s:%d)", msg, d.URL, d.LineNumber)
		case *log.EventEntryAdded:
			// CSP violations, failed loads and the like arrive here. An
			// API's 4xx answer (a 401 before sign-in, a 400 naming a bad
			// field) is handled by the page, though Chromium logs it too.
			if e.Entry.Source == log.EntrySourceNetwork && strings.Contains(e.Entry.URL, "/api/v1/") {
				return
			}
			if e.Entry.Level == log.EntryLevelError || e.Entry.Source == log.EntrySourceSecurity {
				b.problem("%s %s: %s %s", e.Entry.Source, e.Entry.Level, e.Entry.Text, e.Entry.URL)
			}
		case *network.EventLoadingFinished:
			b.mu.Lock()
			b.transferred += int64(e.EncodedDataLength)
			b.mu.Unlock()
		}
	}
	err = chromedp.Listen(ctx, listen) // starts the browser
	if err == nil {
		_, err = chromedp.Call(ctx, log.Enable, cdp.Empty{})
	}
	if err == nil {
		_, err = chromedp.Call(ctx, runtime.Enable, cdp.Empty{})
	}
	if err == nil {
		_, err = chromedp.Call(ctx, network.Enable, network.EnableParams{})
	}
	if err == nil {
		// Every load is a first load: the size measured is what a new
		// visitor downloads.
		_, err = chromedp.Call(ctx, network.SetCacheDisabled, network.SetCacheDisabledParams{CacheDisabled: true})
	}
	if err != nil {
		cancelT()
		cancelA()
		tb.Fatalf("start chromium %s: %v", bin, err)
	}
	tb.Cleanup(func() { cancelT(); cancelA() })
	return b
}

func (b *Browser) problem(format string, args ...any) {
	b.mu.Lock()
	b.problems = append(b.problems, fmt.Sprintf(format, args...))
	b.mu.Unlock()
}

// Problems are the console errors, exceptions and CSP violations so far.
func (b *Browser) Problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.problems...)
}

// IgnoreProblems drops the problems recorded so far (for a step that
// provokes an expected error answer, which Chromium logs).
func (b *Browser) IgnoreProblems() {
	b.mu.Lock()
	b.problems = nil
	b.mu.Unlock()
}

// ResetTransferred zeroes the transferred byte count.
func (b *Browser) ResetTransferred() {
	b.mu.Lock()
	b.transferred = 0
	b.mu.Unlock()
}

// Transferred is the bytes on the wire (compressed, headers included) of
// the responses finished since ResetTransferred.
func (b *Browser) Transferred() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.transferred
}

// Do runs steps with a deadline of d, failing the test on error.
func (b *Browser) Do(tb testing.TB, what string, d time.Duration, steps ...chromedp.Action[chromedp.Void]) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, d)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		loc, _ := chromedp.Run(b.Ctx, chromedp.Location())
		text, _ := chromedp.Run(b.Ctx, chromedp.Evaluate[string](`document.body.innerText`))
		tb.Fatalf("%s (at %s): %v\nproblems: %q\npage text:\n%s", what, loc, err, b.Problems(), text)
	}
}

// Eval evaluates a JavaScript expression and decodes its value into T.
// A promise is awaited.
func Eval[T any](tb testing.TB, b *Browser, expr string) T {
	tb.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		tb.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// Screenshot writes a PNG of the whole page to dir/name.png (dir is created).
func (b *Browser) Screenshot(tb testing.TB, dir, name string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 10*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		tb.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		tb.Fatal(err)
	}
}

package browser

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The console test's "no CSP violations, no console errors" is only as good
// as their detection: each kind of problem here must be reported.
func TestProblemsAreRecorded(t *testing.T) {
	mux := http.NewServeMux()
	page := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'")
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte(`<!doctype html><html><head><title>t</title></head><body><p id="ok">ok</p>` + body + `</body></html>`))
		}
	}
	mux.HandleFunc("/clean", page(`<script src="/ok.js"></script>`))
	mux.HandleFunc("/inline-script", page(`<script>document.title = "x"</script>`))
	mux.HandleFunc("/inline-style", page(`<p style="color: red">red</p>`))
	mux.HandleFunc("/console-error", page(`<script src="/err.js"></script>`))
	mux.HandleFunc("/throws", page(`<script src="/throw.js"></script>`))
	mux.HandleFunc("/missing-asset", page(`<script src="/nope.js"></script>`))
	js := func(src string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/javascript")
			w.Write([]byte(src))
		}
	}
	mux.HandleFunc("/ok.js", js(`document.title = "fine";`))
	mux.HandleFunc("/err.js", js(`console.error("boom");`))
	mux.HandleFunc("/throw.js", js(`throw new Error("thrown");`))
	mux.HandleFunc("/favicon.ico", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	b := Start(t, 800, 600)
	tests := []struct {
		path string
		want string // in some problem; "" means none
	}{
		{"/clean", ""},
		{"/inline-script", "Content Security Policy"},
		{"/inline-style", "Content Security Policy"},
		{"/console-error", "boom"},
		{"/throws", "thrown"},
		{"/missing-asset", "404"},
	}
	for _, tt := range tests {
		t.Run(strings.TrimPrefix(tt.path, "/"), func(t *testing.T) {
			b.IgnoreProblems()
			b.Do(t, "load", 10*time.Second, chromedp.Navigate(srv.URL+tt.path), chromedp.WaitVisible(chromedp.CSS("#ok")))
			// Events arrive asynchronously: wait for the first problem, or
			// a while for a clean page.
			wait := 2 * time.Second
			if tt.want == "" {
				wait = 500 * time.Millisecond
			}
			got := b.Problems()
			for deadline := time.Now().Add(wait); len(got) == 0 && time.Now().Before(deadline); got = b.Problems() {
				time.Sleep(50 * time.Millisecond)
			}
			all := strings.Join(got, "\n")
			if tt.want == "" && len(got) != 0 || tt.want != "" && !strings.Contains(all, tt.want) {
				t.Fatalf("problems %q, want one containing %q", got, tt.want)
			}
		})
	}
}

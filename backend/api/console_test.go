package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/session"
	"github.com/keyalert/keyalert/backend/window"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

// sessionFixture is a router with console sessions and ingest health on.
func sessionFixture(t *testing.T) *fixture {
	t.Helper()
	return sessionFixtureWith(t, session.Options{}, func() time.Time { return now })
}

// sessionFixtureWith is sessionFixture with the sessions' options and
// keyalertd's clock given.
func sessionFixtureWith(t *testing.T, so session.Options, clock func() time.Time) *fixture {
	t.Helper()
	rdb := redistest.Start(t).Client()
	o := storeOptions(rdb, clock, slog.New(slog.NewTextHandler(io.Discard, nil)))
	o.Tokens = []string{"tok-a", "tok-b"}
	o.Retention = 7 * 24 * time.Hour
	o.Sessions = session.NewStore(rdb, so)
	o.Ingest = IngestSource{Redis: rdb, Stream: stream.DefaultStream, Dead: stream.HashTag(stream.DefaultStream) + ":dead", Group: "keyalertd"}
	h, err := NewRouter(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(checked(t, h))
	t.Cleanup(srv.Close)
	return &fixture{srv: srv, rdb: rdb, kw: window.NewKeys(stream.DefaultStream)}
}

// do sends one request with the given headers and cookie (nil: none).
func (f *fixture) do(t *testing.T, method, path, body string, hdr map[string]string, c *http.Cookie) (*http.Response, map[string]any) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, f.srv.URL+path, r)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if c != nil {
		req.AddCookie(c)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(raw, &out)
	return resp, out
}

// signIn trades token for a session cookie and its CSRF token.
func (f *fixture) signIn(t *testing.T, token string) (*http.Cookie, string) {
	t.Helper()
	resp, out := f.do(t, http.MethodPost, "/api/v1/session", `{"token":"`+token+`"}`, map[string]string{"Content-Type": "application/json"}, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sign-in: status %d: %v", resp.StatusCode, out)
	}
	for _, c := range resp.Cookies() {
		if c.Name == session.CookieName {
			return c, out["csrf_token"].(string)
		}
	}
	t.Fatalf("sign-in set no %s cookie", session.CookieName)
	return nil, ""
}

func TestSignInRefusesAWrongTokenAtTheField(t *testing.T) {
	f := sessionFixture(t)
	for _, body := range []string{`{"token":"nope"}`, `{"token":""}`, `{}`, `not json`} {
		resp, out := f.do(t, http.MethodPost, "/api/v1/session", body, map[string]string{"Content-Type": "application/json"}, nil)
		if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d", body, resp.StatusCode)
		}
		if len(resp.Cookies()) != 0 {
			t.Errorf("%s: a cookie was set", body)
		}
		fields, _ := out["fields"].([]any)
		if len(fields) != 1 || fields[0].(map[string]any)["field"] != "token" {
			t.Errorf("%s: fields %v, want one on token", body, out["fields"])
		}
	}
}

func TestSignInFromAFormOfAnotherSiteIsRefused(t *testing.T) {
	f := sessionFixture(t)
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		resp, out := f.do(t, http.MethodPost, "/api/v1/session", `{"token":"tok-a"}`, map[string]string{"Content-Type": ct}, nil)
		if resp.StatusCode != http.StatusUnsupportedMediaType || len(resp.Cookies()) != 0 {
			t.Errorf("Content-Type %q: status %d, cookies %v: %v", ct, resp.StatusCode, resp.Cookies(), out)
		}
	}
}

func TestSessionCookieFlags(t *testing.T) {
	f := sessionFixture(t)
	c, csrf := f.signIn(t, "tok-a")
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.MaxAge <= 0 || len(c.Value) < 40 {
		t.Fatalf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/, a lifetime and a long random value", c)
	}
	if csrf == "" || csrf == c.Value {
		t.Fatalf("csrf token %q", csrf)
	}
}

func TestSessionAuthAndCSRF(t *testing.T) {
	f := sessionFixture(t)
	c, csrf := f.signIn(t, "tok-a")
	silence := `{"host":"web-1","end":"2024-05-01T12:00:00Z","author":"alice"}`
	tests := []struct {
		name         string
		method, path string
		body         string
		hdr          map[string]string
		cookie       *http.Cookie
		want         int
	}{
		{"no session nor bearer token: read", "GET", "/api/v1/alerts", "", nil, nil, http.StatusUnauthorized},
		{"no session nor bearer token: change", "POST", "/api/v1/silences", silence, nil, nil, http.StatusUnauthorized},
		{"no session nor bearer token: ingest health", "GET", "/api/v1/health/ingest", "", nil, nil, http.StatusUnauthorized},
		{"no session nor bearer token: preview", "POST", "/api/v1/rules/preview", "{}", nil, nil, http.StatusUnauthorized},
		{"no session nor bearer token: session", "GET", "/api/v1/session", "", nil, nil, http.StatusUnauthorized},
		{"forged cookie", "GET", "/api/v1/alerts", "", nil, &http.Cookie{Name: session.CookieName, Value: "forged"}, http.StatusUnauthorized},
		{"session reads", "GET", "/api/v1/alerts", "", nil, c, http.StatusOK},
		{"session change without CSRF token", "POST", "/api/v1/silences", silence, nil, c, http.StatusForbidden},
		{"session change with a wrong CSRF token", "POST", "/api/v1/silences", silence, map[string]string{session.CSRFHeader: "x" + csrf}, c, http.StatusForbidden},
		{"session delete without CSRF token", "DELETE", "/api/v1/session", "", nil, c, http.StatusForbidden},
		{"session change with its CSRF token", "POST", "/api/v1/silences", silence, map[string]string{session.CSRFHeader: csrf}, c, http.StatusCreated},
		{"bearer token needs no CSRF token", "POST", "/api/v1/silences", silence, map[string]string{"Authorization": "Bearer tok-b"}, nil, http.StatusCreated},
		{"a wrong bearer token is not rescued by a session", "GET", "/api/v1/alerts", "", map[string]string{"Authorization": "Bearer nope"}, c, http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, out := f.do(t, tt.method, tt.path, tt.body, tt.hdr, tt.cookie)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %v", resp.StatusCode, tt.want, out)
			}
			if tt.want >= 400 {
				if _, ok := out["error"].(string); !ok {
					t.Fatalf("error body %v, want the common shape", out)
				}
			}
		})
	}
	t.Run("GET session gives the CSRF token back", func(t *testing.T) {
		_, out := f.do(t, "GET", "/api/v1/session", "", nil, c)
		if out["csrf_token"] != csrf || out["now"] != now.Format(time.RFC3339) {
			t.Fatalf("GET /session = %v", out)
		}
	})
	t.Run("sign-out ends the session", func(t *testing.T) {
		resp, out := f.do(t, "DELETE", "/api/v1/session", "", map[string]string{session.CSRFHeader: csrf}, c)
		if resp.StatusCode != http.StatusNoContent {
			t.Fatalf("sign-out: %d %v", resp.StatusCode, out)
		}
		if cs := resp.Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 {
			t.Fatalf("sign-out cookies %v, want the cookie cleared", cs)
		}
		if resp, _ := f.do(t, "GET", "/api/v1/alerts", "", nil, c); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("the old cookie after sign-out: %d, want 401", resp.StatusCode)
		}
	})
}

func TestSessionEndsWhenItsTokenIsRemoved(t *testing.T) {
	f := sessionFixture(t)
	c, _ := f.signIn(t, "tok-a")
	o := storeOptions(f.rdb, func() time.Time { return now }, slog.New(slog.DiscardHandler))
	o.Tokens = []string{"tok-b"} // tok-a taken out of KEYALERT_API_TOKENS
	o.Sessions = session.NewStore(f.rdb, session.Options{})
	h, err := NewRouter(o)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "/api/v1/alerts", nil)
	req.AddCookie(c)
	w := &recorder{h: http.Header{}}
	h.ServeHTTP(w, req)
	if w.code != http.StatusUnauthorized {
		t.Fatalf("status %d, want 401", w.code)
	}
}

type recorder struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.h }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(c int)           { r.code = c }

func TestIngestHealthNamesHostsLastHeard(t *testing.T) {
	f := sessionFixture(t)
	ctx := context.Background()
	for _, host := range []string{"web-1", "web-2", "web-1"} {
		e := stream.Entry{Batch: strings.Repeat("ab", 16), Keyword: keyword.Spec{Text: "Exception"}, Tag: "app", Host: host, Minute: 1714557000, Count: 1}
		if host == "web-2" { // labels need version 4, which has producer and attempt
			e.Producer, e.Attempt = strings.Repeat("0f", 8), strings.Repeat("1e", 8)
			e.Labels = []stream.Label{{Name: "app", Value: "cart"}, {Name: "namespace", Value: "shop"}}
		}
		if err := f.rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream.DefaultStream, Values: e.AppendValues(nil)}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	f.rdb.XAdd(ctx, &redis.XAddArgs{Stream: stream.HashTag(stream.DefaultStream) + ":dead", Values: []any{"reason", "bad"}})
	var out struct {
		Length      int64    `json:"length"`
		DeadLetters int64    `json:"dead_letters"`
		Rate        float64  `json:"entries_per_second"`
		LabelNames  []string `json:"label_names"`
		Hosts       []struct {
			Host      string    `json:"host"`
			LastHeard time.Time `json:"last_heard"`
		} `json:"hosts"`
	}
	if st := f.get(t, "/api/v1/health/ingest", "tok-a", &out); st != http.StatusOK {
		t.Fatalf("status %d", st)
	}
	if out.Length != 3 || out.DeadLetters != 1 || out.Rate != 0.3 || len(out.Hosts) != 2 {
		t.Fatalf("health %+v", out)
	}
	if fmt.Sprint(out.LabelNames) != "[app namespace]" {
		t.Errorf("label names %v, want [app namespace] (those of the newest entries)", out.LabelNames)
	}
	for _, h := range out.Hosts {
		if time.Since(h.LastHeard) > time.Minute {
			t.Errorf("host %s last heard %v", h.Host, h.LastHeard)
		}
	}
}

func TestRulePreviewReplaysTheLastDay(t *testing.T) {
	f := sessionFixture(t)
	kw := keyword.Spec{Text: "Exception"}.ID()
	f.count(t, kw, minute(9, 50), "web-1", "app", 10) // inside the 24h, fires
	f.count(t, kw, minute(10, 10), "web-2", "app", 2) // under the threshold
	rule := `{"name":"p","keywords":["Exception"],"condition":{"type":"threshold","count":5,"window":"5m"},"group_by":"host"}`
	tests := []struct {
		name     string
		body     string
		want     int
		triggers int
		field    string
	}{
		{"a threshold over stored counts", rule, http.StatusOK, 1, ""},
		{"a bad regex is named at its field", `{"name":"p","match":"regex","keywords":["(unclosed"],"condition":{"type":"threshold","count":5,"window":"5m"}}`, http.StatusBadRequest, 0, "keywords[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, out := f.do(t, "POST", "/api/v1/rules/preview", tt.body, map[string]string{"Authorization": "Bearer tok-a"}, nil)
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d: %v", resp.StatusCode, tt.want, out)
			}
			if tt.field != "" {
				fields, _ := out["fields"].([]any)
				if len(fields) == 0 || fields[0].(map[string]any)["field"] != tt.field {
					t.Fatalf("fields %v, want %s", out["fields"], tt.field)
				}
				return
			}
			n := 0
			for _, e := range out["events"].([]any) {
				ev := e.(map[string]any)
				if ev["kind"] == "trigger" {
					n++
					if ev["group"] != "web-1" {
						t.Errorf("trigger for %v", ev["group"])
					}
				}
			}
			if n != tt.triggers {
				t.Fatalf("%d triggers, want %d: %v", n, tt.triggers, out["events"])
			}
		})
	}
	var rules map[string][]any
	f.get(t, "/api/v1/rules", "tok-a", &rules)
	if len(rules["rules"]) != 0 {
		t.Fatalf("a preview stored a rule: %v", rules)
	}
}

// signInStatus posts a sign-in with token and answers the status, the
// Retry-After header and the body.
func (f *fixture) signInStatus(t *testing.T, token string) (int, string, map[string]any) {
	t.Helper()
	resp, out := f.do(t, http.MethodPost, "/api/v1/session", `{"token":"`+token+`"}`, map[string]string{"Content-Type": "application/json"}, nil)
	return resp.StatusCode, resp.Header.Get("Retry-After"), out
}

func TestSignInRateLimitPerAddress(t *testing.T) {
	var clock atomic.Int64 // keyalertd's clock, Unix seconds
	minute := now.Truncate(time.Minute)
	clock.Store(minute.Add(45 * time.Second).Unix())
	f := sessionFixtureWith(t, session.Options{SignInsPerMinute: 3}, func() time.Time { return time.Unix(clock.Load(), 0).UTC() })
	ctx := context.Background()

	// Sign-ins that pass use up nothing.
	for i := range 5 {
		if st, _, out := f.signInStatus(t, "tok-a"); st != http.StatusOK {
			t.Fatalf("good sign-in %d: %d %v", i, st, out)
		}
	}
	steps := []struct {
		name, token string
		want        int
	}{
		{"1st wrong token", "nope-1", http.StatusUnauthorized},
		{"2nd wrong token", "nope-2", http.StatusUnauthorized},
		{"3rd wrong token", "nope-3", http.StatusUnauthorized},
		{"a 4th guess is not even compared", "nope-4", http.StatusTooManyRequests},
		{"nor is the right token, this minute", "tok-a", http.StatusTooManyRequests},
	}
	for _, tc := range steps {
		st, retry, out := f.signInStatus(t, tc.token)
		if st != tc.want {
			t.Fatalf("%s: status %d, want %d: %v", tc.name, st, tc.want, out)
		}
		if st != http.StatusTooManyRequests {
			continue
		}
		if retry != "15" {
			t.Errorf("%s: Retry-After %q, want 15 (seconds to the minute's end)", tc.name, retry)
		}
		fields, _ := out["fields"].([]any)
		if _, ok := out["error"].(string); !ok || len(fields) != 1 || fields[0].(map[string]any)["field"] != "token" ||
			!strings.Contains(fields[0].(map[string]any)["message"].(string), "try again in 15 s") {
			t.Errorf("%s: body %v, want the error shape naming token, saying when to try again", tc.name, out)
		}
	}
	// The counter is one key per address and minute, gone soon after it.
	keys := f.rdb.Keys(ctx, "ka:signin:*").Val()
	if len(keys) != 1 {
		t.Fatalf("sign-in counters %v, want one", keys)
	}
	if ttl := f.rdb.TTL(ctx, keys[0]).Val(); ttl <= 0 || ttl > 16*time.Second {
		t.Errorf("counter %s expires in %v, want within the 15 s left of its minute (+1 s)", keys[0], ttl)
	}
	// The next minute starts afresh.
	clock.Store(minute.Add(time.Minute).Unix())
	if st, _, out := f.signInStatus(t, "tok-a"); st != http.StatusOK {
		t.Fatalf("next minute: %d %v", st, out)
	}
}

func TestSessionCapSignsOutTheOldest(t *testing.T) {
	f := sessionFixtureWith(t, session.Options{MaxPerToken: 2, TTL: time.Hour}, func() time.Time { return now })
	ctx := context.Background()
	other, _ := f.signIn(t, "tok-b")
	var cs []*http.Cookie
	var csrfs []string
	for range 3 {
		c, csrf := f.signIn(t, "tok-a")
		cs, csrfs = append(cs, c), append(csrfs, csrf)
	}
	for i, tc := range []struct {
		name   string
		cookie *http.Cookie
		want   int
	}{
		{"the oldest of tok-a's three is signed out", cs[0], http.StatusUnauthorized},
		{"the second lives", cs[1], http.StatusOK},
		{"the newest lives", cs[2], http.StatusOK},
		{"another token's session is not touched", other, http.StatusOK},
	} {
		if resp, out := f.do(t, "GET", "/api/v1/alerts", "", nil, tc.cookie); resp.StatusCode != tc.want {
			t.Errorf("%d %s: status %d, want %d: %v", i, tc.name, resp.StatusCode, tc.want, out)
		}
	}
	sessions := func() []string {
		var live []string
		for _, k := range f.rdb.Keys(ctx, "ka:{sessions}:*").Val() {
			if !strings.HasPrefix(k, "ka:{sessions}:tok:") {
				live = append(live, k)
			}
		}
		return live
	}
	if n := len(sessions()); n != 3 {
		t.Errorf("%d sessions in Redis, want 3 (two of tok-a, one of tok-b)", n)
	}
	idx := "ka:{sessions}:tok:" + session.Fingerprint("tok-a")
	if n := f.rdb.ZCard(ctx, idx).Val(); n != 2 {
		t.Errorf("tok-a's index holds %d sessions, want 2", n)
	}
	if ttl := f.rdb.TTL(ctx, idx).Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("tok-a's index expires in %v, want within the session TTL", ttl)
	}
	// Sign-out takes a session out of its token's index too.
	if resp, out := f.do(t, "DELETE", "/api/v1/session", "", map[string]string{session.CSRFHeader: csrfs[2]}, cs[2]); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("sign-out: %d %v", resp.StatusCode, out)
	}
	if n := f.rdb.ZCard(ctx, idx).Val(); n != 1 {
		t.Errorf("after a sign-out tok-a's index holds %d sessions, want 1", n)
	}
	if n := len(sessions()); n != 2 {
		t.Errorf("after a sign-out %d sessions in Redis, want 2", n)
	}
}

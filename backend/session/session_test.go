package session

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
)

func TestSessionLifecycle(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	st := NewStore(rdb, Options{TTL: time.Hour})
	id, csrf, _, err := st.Create(ctx, Fingerprint("tok"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		id   string
		want error
	}{
		{"the id it handed out", id, nil},
		{"an unknown id", "nope", ErrNotFound},
		{"no id", "", ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := st.Lookup(ctx, tc.id)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Lookup: %v, want %v", err, tc.want)
			}
			if tc.want == nil && (s.CSRF != csrf || s.Token != Fingerprint("tok")) {
				t.Fatalf("Lookup = %+v", s)
			}
		})
	}
	keys, _ := rdb.Keys(ctx, "*").Result()
	for _, k := range keys {
		if ttl := rdb.TTL(ctx, k).Val(); ttl <= 0 || ttl > time.Hour {
			t.Errorf("%s: TTL %v, want within an hour", k, ttl)
		}
		if k == keyPrefix+id {
			t.Errorf("the session id itself is a Redis key")
		}
	}
	if err := st.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Lookup(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after Delete: %v, want ErrNotFound", err)
	}
}

func TestCookieIsHttpOnlyStrictAndSecureOnlyOverHTTPS(t *testing.T) {
	st := NewStore(nil, Options{TTL: 2 * time.Hour})
	for _, tc := range []struct {
		name   string
		proto  string
		secure bool
	}{
		{"plain http", "", false},
		{"behind a TLS proxy", "https", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/api/v1/session", nil)
			if tc.proto != "" {
				r.Header.Set("X-Forwarded-Proto", tc.proto)
			}
			w := httptest.NewRecorder()
			st.SetCookie(w, r, "abc")
			cs := w.Result().Cookies()
			if len(cs) != 1 {
				t.Fatalf("cookies %v", cs)
			}
			c := cs[0]
			if c.Name != CookieName || c.Value != "abc" || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode ||
				c.Path != "/" || c.MaxAge != 7200 || c.Secure != tc.secure {
				t.Fatalf("cookie %+v", c)
			}
		})
	}
}

func TestCSRFValid(t *testing.T) {
	s := Session{CSRF: "good"}
	for _, tc := range []struct {
		name, header string
		want         bool
	}{
		{"matching", "good", true},
		{"missing", "", false},
		{"wrong", "bad", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", nil)
			if tc.header != "" {
				r.Header.Set(CSRFHeader, tc.header)
			}
			if got := CSRFValid(r, s); got != tc.want {
				t.Fatalf("CSRFValid = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCapKeepsTheNewestSessions(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		max     int
		created int
	}{
		{"one allowed, five back to back", 1, 5},
		{"three allowed, ten back to back", 3, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := NewStore(rdb, Options{TTL: time.Hour, MaxPerToken: tc.max})
			tok := Fingerprint(tc.name)
			var ids []string
			for range tc.created { // well within a millisecond of each other
				id, _, ended, err := st.Create(ctx, tok)
				if err != nil {
					t.Fatal(err)
				}
				if want := min(1, max(0, len(ids)+1-tc.max)); ended != want {
					t.Errorf("sign-in %d signed out %d, want %d", len(ids)+1, ended, want)
				}
				ids = append(ids, id)
			}
			for i, id := range ids {
				_, err := st.Lookup(ctx, id)
				if live := i >= tc.created-tc.max; live != (err == nil) {
					t.Errorf("session %d of %d: Lookup error %v, want live=%v", i+1, tc.created, err, live)
				}
			}
			if n := rdb.ZCard(ctx, tokenPrefix+tok).Val(); n != int64(tc.max) {
				t.Errorf("token index holds %d, want %d", n, tc.max)
			}
		})
	}
}

func TestAttemptsPerAddressAndMinute(t *testing.T) {
	rdb := redistest.Start(t).Client()
	ctx := context.Background()
	st := NewStore(rdb, Options{SignInsPerMinute: 2})
	at := time.Date(2024, 5, 1, 10, 30, 50, 0, time.UTC)
	for i, tc := range []struct {
		name      string
		addr      string
		at        time.Time
		succeeded bool
		want      error
		retry     time.Duration
	}{
		{"a success gives its attempt back", "10.0.0.1", at, true, nil, 0},
		{"1st failure", "10.0.0.1", at, false, nil, 0},
		{"2nd failure", "10.0.0.1", at, false, nil, 0},
		{"over the budget until the minute ends", "10.0.0.1", at.Add(5 * time.Second), false, ErrTooManyAttempts, 5 * time.Second},
		{"another address has its own budget", "10.0.0.2", at, false, nil, 0},
		{"the next minute starts afresh", "10.0.0.1", at.Add(10 * time.Second), false, nil, 0},
	} {
		retry, err := st.Attempt(ctx, tc.addr, tc.at)
		if !errors.Is(err, tc.want) || retry != tc.retry {
			t.Fatalf("%d %s: Attempt = %v, %v; want %v, %v", i, tc.name, retry, err, tc.retry, tc.want)
		}
		if tc.succeeded {
			if err := st.Succeeded(ctx, tc.addr, tc.at); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, k := range rdb.Keys(ctx, attemptPrefix+"*").Val() {
		if ttl := rdb.TTL(ctx, k).Val(); ttl <= 0 || ttl > 61*time.Second {
			t.Errorf("%s: TTL %v, want at most the rest of its minute", k, ttl)
		}
	}
	// A counter that expired before the success is not brought back
	// without a TTL.
	rdb.FlushAll(ctx)
	if err := st.Succeeded(ctx, "10.0.0.3", at); err != nil {
		t.Fatal(err)
	}
	if n := rdb.DBSize(ctx).Val(); n != 0 {
		t.Errorf("%d keys after a late success, want none", n)
	}
}

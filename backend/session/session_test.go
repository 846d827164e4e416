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
	id, csrf, err := st.Create(ctx, Fingerprint("tok"))
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

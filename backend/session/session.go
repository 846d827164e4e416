// Package session is the web console's sign-in: an operator trades one of
// the API tokens for a random session id held in an HttpOnly, SameSite=Strict
// cookie, and every change made with that cookie carries the session's CSRF
// token in a header. Sessions live in Redis, so every replica behind a load
// balancer knows them and a sign-out ends one everywhere.
//
// Redis holds only a hash of the session id (a copy of Redis cannot be
// replayed as a cookie) and a fingerprint of the API token it was opened with,
// so removing a token from KEYALERT_API_TOKENS ends its sessions too.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// DefaultTTL is how long a session lasts after sign-in.
	DefaultTTL = 12 * time.Hour
	// CookieName is the session cookie.
	CookieName = "keyalert_session"
	// CSRFHeader carries the session's CSRF token on every request that is
	// not a GET or HEAD.
	CSRFHeader = "X-CSRF-Token"
	// keyPrefix is followed by the hex SHA-256 of the session id.
	keyPrefix = "ka:{sessions}:"
)

// ErrNotFound is a session id that is unknown, expired or signed out.
var ErrNotFound = errors.New("no such session")

// Options configures a Store; the zero value works.
type Options struct {
	// TTL is a session's lifetime from sign-in; zero: DefaultTTL.
	TTL time.Duration
}

// Session is what a valid cookie stands for.
type Session struct {
	// CSRF is the token changes must carry in CSRFHeader.
	CSRF string
	// Token is the fingerprint (Fingerprint) of the API token signed in with.
	Token string
}

// Store keeps sessions in Redis.
type Store struct {
	rdb redis.UniversalClient
	ttl time.Duration
}

// NewStore returns a store on rdb.
func NewStore(rdb redis.UniversalClient, o Options) *Store {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	return &Store{rdb: rdb, ttl: o.TTL}
}

// TTL is a session's lifetime.
func (s *Store) TTL() time.Duration { return s.ttl }

// Fingerprint names an API token without revealing it.
func Fingerprint(token string) string {
	sum := sha256.Sum256([]byte("keyalert-api-token\x00" + token))
	return hex.EncodeToString(sum[:16])
}

func key(id string) string {
	sum := sha256.Sum256([]byte(id))
	return keyPrefix + hex.EncodeToString(sum[:])
}

func random() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random session bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// Create opens a session for the API token with fingerprint tok and returns
// its id (the cookie's value) and CSRF token.
func (s *Store) Create(ctx context.Context, tok string) (id, csrf string, err error) {
	if id, err = random(); err != nil {
		return "", "", err
	}
	if csrf, err = random(); err != nil {
		return "", "", err
	}
	k := key(id)
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k, "csrf", csrf, "tok", tok)
		p.Expire(ctx, k, s.ttl)
		return nil
	})
	if err != nil {
		return "", "", fmt.Errorf("create session %s: %w", k, err)
	}
	return id, csrf, nil
}

// Lookup returns the session of id, or ErrNotFound.
func (s *Store) Lookup(ctx context.Context, id string) (Session, error) {
	if id == "" {
		return Session{}, ErrNotFound
	}
	k := key(id)
	v, err := s.rdb.HMGet(ctx, k, "csrf", "tok").Result()
	if err != nil {
		return Session{}, fmt.Errorf("read session %s: %w", k, err)
	}
	csrf, _ := v[0].(string)
	tok, _ := v[1].(string)
	if csrf == "" {
		return Session{}, ErrNotFound
	}
	return Session{CSRF: csrf, Token: tok}, nil
}

// Delete ends the session of id; an unknown id is not an error.
func (s *Store) Delete(ctx context.Context, id string) error {
	if id == "" {
		return nil
	}
	if err := s.rdb.Del(ctx, key(id)).Err(); err != nil {
		return fmt.Errorf("delete session %s: %w", key(id), err)
	}
	return nil
}

// FromRequest is the session id of r's cookie ("" without one).
func FromRequest(r *http.Request) string {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return ""
	}
	return c.Value
}

// secure reports whether the browser reached us over HTTPS (directly or
// through a proxy that says so); the cookie is then marked Secure. Over plain
// HTTP (loopback, the demo) a Secure cookie would not be sent back at all.
func secure(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}

// SetCookie hands the browser the session id: HttpOnly (no script reads
// it), SameSite=Strict (no other site's page sends it), Path=/.
func (s *Store) SetCookie(w http.ResponseWriter, r *http.Request, id string) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: id, Path: "/",
		MaxAge: int(s.ttl / time.Second), HttpOnly: true, Secure: secure(r),
		SameSite: http.SameSiteStrictMode,
	})
}

// ClearCookie tells the browser to drop the session cookie.
func ClearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{
		Name: CookieName, Value: "", Path: "/", MaxAge: -1,
		HttpOnly: true, Secure: secure(r), SameSite: http.SameSiteStrictMode,
	})
}

// SafeMethod reports whether m changes nothing and so needs no CSRF token.
func SafeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// CSRFValid compares r's CSRF header with the session's, in constant time.
func CSRFValid(r *http.Request, s Session) bool {
	got := r.Header.Get(CSRFHeader)
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(s.CSRF)) == 1
}

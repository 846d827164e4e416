// Package session is the web console's sign-in: an operator trades one of
// the API tokens for a random session id held in an HttpOnly, SameSite=Strict
// cookie, and every change made with that cookie carries the session's CSRF
// token in a header. Sessions live in Redis, so every replica behind a load
// balancer knows them and a sign-out ends one everywhere.
//
// Redis holds only a hash of the session id (a copy of Redis cannot be
// replayed as a cookie) and a fingerprint of the API token it was opened with,
// so removing a token from KEYALERT_API_TOKENS ends its sessions too.
//
// Both are bounded in Redis: each API token has at most MaxPerToken live
// sessions (signing in past it signs the oldest out), and each client
// address at most SignInsPerMinute failed sign-ins in a clock minute (then
// every attempt from it is refused until the minute ends).
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
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
	// DefaultMaxPerToken is how many live sessions one API token may have.
	DefaultMaxPerToken = 20
	// DefaultSignInsPerMinute is how many failed sign-ins one client
	// address may make in a clock minute.
	DefaultSignInsPerMinute = 10
	// keyPrefix is followed by the hex SHA-256 of the session id.
	keyPrefix = "ka:{sessions}:"
	// tokenPrefix is followed by a token's fingerprint: a sorted set of its
	// sessions' keys scored by creation time (µs), for the cap. It shares
	// the hash tag of the sessions so its scripts touch one cluster slot.
	tokenPrefix = "ka:{sessions}:tok:"
	// attemptPrefix is followed by the clock minute (Unix seconds / 60) and
	// the client address: that minute's failed sign-ins.
	attemptPrefix = "ka:signin:"
)

// ErrNotFound is a session id that is unknown, expired or signed out.
var ErrNotFound = errors.New("no such session")

// ErrTooManyAttempts is a client address over its failed sign-ins for the
// current minute.
var ErrTooManyAttempts = errors.New("too many failed sign-ins from this address")

// Options configures a Store; the zero value works.
type Options struct {
	// TTL is a session's lifetime from sign-in; zero: DefaultTTL.
	TTL time.Duration
	// MaxPerToken caps the live sessions of one API token; a sign-in past
	// it signs out that token's oldest session. Zero: DefaultMaxPerToken.
	MaxPerToken int
	// SignInsPerMinute caps the failed sign-ins of one client address per
	// clock minute. Zero: DefaultSignInsPerMinute.
	SignInsPerMinute int
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
	o   Options
}

// NewStore returns a store on rdb.
func NewStore(rdb redis.UniversalClient, o Options) *Store {
	if o.TTL <= 0 {
		o.TTL = DefaultTTL
	}
	if o.MaxPerToken <= 0 {
		o.MaxPerToken = DefaultMaxPerToken
	}
	if o.SignInsPerMinute <= 0 {
		o.SignInsPerMinute = DefaultSignInsPerMinute
	}
	return &Store{rdb: rdb, ttl: o.TTL, o: o}
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
// its id (the cookie's value), its CSRF token and how many of the token's
// oldest sessions it signed out to stay within MaxPerToken.
func (s *Store) Create(ctx context.Context, tok string) (id, csrf string, ended int, err error) {
	if id, err = random(); err != nil {
		return "", "", 0, err
	}
	if csrf, err = random(); err != nil {
		return "", "", 0, err
	}
	k := key(id)
	n, err := createScript.Run(ctx, s.rdb, []string{k, tokenPrefix + tok},
		csrf, tok, s.ttl.Milliseconds(), s.o.MaxPerToken).Int()
	if err != nil {
		return "", "", 0, fmt.Errorf("create session %s: %w", k, err)
	}
	return id, csrf, n, nil
}

var (
	//go:embed create.lua
	createLua    string
	createScript = redis.NewScript(createLua)
	// uncountScript decrements a sign-in counter that still exists: one
	// that expired in between is not created again without a TTL.
	uncountScript = redis.NewScript(`if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end return 0`)
	//go:embed delete.lua
	deleteLua    string
	deleteScript = redis.NewScript(deleteLua)
)

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
	if err := deleteScript.Run(ctx, s.rdb, []string{key(id)}, tokenPrefix).Err(); err != nil {
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

// ClientAddress is the address sign-ins are counted by: the connection's
// peer without its port. X-Forwarded-For is not trusted (any client can set
// it), so behind a proxy every browser shares the proxy's budget.
func ClientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Attempt counts a sign-in from addr at now against its clock minute. Over
// SignInsPerMinute it answers ErrTooManyAttempts and how long until the
// minute ends (for Retry-After). A sign-in that then succeeds calls
// Succeeded, so only failures use up the budget; counting before checking
// the token keeps concurrent guesses within it too. The counter expires
// with its minute, so Redis holds at most one small key per address that
// tried in the last minute.
func (s *Store) Attempt(ctx context.Context, addr string, now time.Time) (retry time.Duration, err error) {
	k, left := attemptKey(addr, now)
	var n *redis.IntCmd
	if _, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		n = p.Incr(ctx, k)
		// One second past the minute's end on keyalertd's clock: a small
		// skew with Redis's clock does not drop it early.
		p.Expire(ctx, k, left+time.Second)
		return nil
	}); err != nil {
		return 0, fmt.Errorf("count sign-in %s: %w", k, err)
	}
	if n.Val() > int64(s.o.SignInsPerMinute) {
		return left, ErrTooManyAttempts
	}
	return 0, nil
}

// Succeeded takes back the attempt of a sign-in that passed.
func (s *Store) Succeeded(ctx context.Context, addr string, now time.Time) error {
	k, _ := attemptKey(addr, now)
	if err := uncountScript.Run(ctx, s.rdb, []string{k}).Err(); err != nil {
		return fmt.Errorf("uncount sign-in %s: %w", k, err)
	}
	return nil
}

// attemptKey is addr's counter for the clock minute of now, and the time
// left in that minute (at least a second).
func attemptKey(addr string, now time.Time) (string, time.Duration) {
	min := now.Unix() / 60
	left := time.Unix((min+1)*60, 0).Sub(now)
	if left < time.Second {
		left = time.Second
	}
	return attemptPrefix + strconv.FormatInt(min, 10) + ":" + addr, left.Round(time.Second)
}

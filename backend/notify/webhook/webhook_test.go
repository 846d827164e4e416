package webhook_test

import (
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/notify/webhook"
)

func TestVerifyAcceptsFreshSignaturesAndRejectsForgeriesAndReplays(t *testing.T) {
	secret := []byte("whsec-0123456789abcdef")
	now := time.Unix(1_800_000_000, 0)
	body := []byte(`{"schema":"keyalert.notification/v1"}`)
	ts := strconv.FormatInt(now.Unix(), 10)
	sig := webhook.Sign(secret, ts, body)
	old := strconv.FormatInt(now.Add(-10*time.Minute).Unix(), 10)
	cases := []struct {
		name    string
		ts, sig string
		body    []byte
		secret  []byte
		want    error
	}{
		{"valid", ts, sig, body, secret, nil},
		{"other body", ts, sig, []byte(`{}`), secret, webhook.ErrSignature},
		{"other secret", ts, sig, body, []byte("another-secret-0000"), webhook.ErrSignature},
		{"timestamp changed", strconv.FormatInt(now.Unix()+1, 10), sig, body, secret, webhook.ErrSignature},
		{"replayed later", old, webhook.Sign(secret, old, body), body, secret, webhook.ErrStale},
		{"no timestamp", "", sig, body, secret, webhook.ErrStale},
		{"no version prefix", ts, sig[3:], body, secret, webhook.ErrSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := webhook.Verify(tc.secret, tc.ts, tc.sig, tc.body, now, 5*time.Minute)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify: %v, want %v", err, tc.want)
			}
		})
	}
}

package notify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"
)

// ChatWebhook is the transport chat integrations (Slack, Teams) share: one
// webhook URL, paced per webhook, marked as a chat so a timed-out message is
// not posted a second time. The integration adds only its encoding.
type ChatWebhook struct {
	url   string
	hc    *http.Client
	every time.Duration
}

// NewChatWebhook returns the transport for url; timeout and perMinute must
// be positive (the integrations apply their defaults first).
func NewChatWebhook(url string, timeout time.Duration, perMinute int) *ChatWebhook {
	return &ChatWebhook{url: url, hc: &http.Client{Timeout: timeout}, every: time.Minute / time.Duration(perMinute)}
}

// Pace paces messages per webhook, keyed by a hash so the URL (a secret) is
// never a label or a log field.
func (c *ChatWebhook) Pace(Notification) (string, time.Duration) {
	sum := sha256.Sum256([]byte(c.url))
	return hex.EncodeToString(sum[:8]), c.every
}

// Messages marks a chat: no duplicate after a timeout.
func (c *ChatWebhook) Messages() bool { return true }

// Send posts one message.
func (c *ChatWebhook) Send(ctx context.Context, body []byte) Delivery {
	return Post(ctx, c.hc, c.url, nil, body)
}

package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Post sends body to url with the headers and classifies the answer for
// the outbox: 2xx delivered; 429, 408 and 5xx retried (with Retry-After);
// other 4xx (bad request, bad credentials, gone) rejected, since the same
// message will never be accepted. The URL is never part of the reason: a
// webhook URL carries its token.
func Post(ctx context.Context, hc *http.Client, rawURL string, header http.Header, body []byte) Delivery {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return Delivery{Outcome: Reject, Reason: "build request: invalid URL"}
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "keyalert")
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		return Delivery{Outcome: Retry, Reason: fmt.Sprintf("post: %v", err)}
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	d := Delivery{Status: resp.StatusCode}
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		d.Outcome = Delivered
		return d
	case c == http.StatusTooManyRequests, c == http.StatusRequestTimeout, c >= 500:
		d.Outcome = Retry
		if s := resp.Header.Get("Retry-After"); s != "" {
			if secs, err := strconv.Atoi(strings.TrimSpace(s)); err == nil && secs > 0 {
				d.RetryAfter = time.Duration(secs) * time.Second
			}
		}
	case c >= 400:
		d.Outcome = Reject
	default:
		d.Outcome = Retry // 1xx, 3xx: not an answer
	}
	text := strings.TrimSpace(strings.ToValidUTF8(string(raw), ""))
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	d.Reason = fmt.Sprintf("HTTP %d: %s", resp.StatusCode, text)
	return d
}

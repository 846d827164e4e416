package client

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"sync"
	"testing"

	"github.com/keyalert/keyalert/harness/openapitest"
)

// TestEveryCallIsAnOperationOfTheOpenAPIDocument sends each of the client's
// calls to a stand-in server and checks the requests against keyalertd's
// OpenAPI description (the CLI's tests check whole exchanges against the
// real router).
func TestEveryCallIsAnOperationOfTheOpenAPIDocument(t *testing.T) {
	spec, err := os.ReadFile("../../backend/api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := openapitest.MustLoad(t, spec)
	type sent struct {
		req  *http.Request
		body []byte
	}
	var mu sync.Mutex
	var got []sent
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, sent{r.Clone(context.Background()), b})
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	c := New(srv.URL, "tok")
	ctx := context.Background()
	q := url.Values{"keyword": {"Error"}, "from": {"2025-01-01T00:00:00Z"}, "to": {"2025-01-01T01:00:00Z"}}
	calls := map[string]func() error{
		"Rules":      func() error { _, err := c.Rules(ctx); return err },
		"CreateRule": func() error { _, err := c.CreateRule(ctx, []byte(`{"name":"x","keywords":["Error"]}`)); return err },
		"UpdateRule": func() error {
			_, err := c.UpdateRule(ctx, "r1", []byte(`{"name":"x","keywords":["Error"]}`))
			return err
		},
		"DeleteRule": func() error { return c.DeleteRule(ctx, "r1") },
		"Alerts":     func() error { _, err := c.Alerts(ctx, "firing"); return err },
		"Ack":        func() error { _, err := c.Ack(ctx, "a1", "ana"); return err },
		"Resolve":    func() error { _, err := c.Resolve(ctx, "a1", ""); return err },
		"Silences":   func() error { _, err := c.Silences(ctx, true); return err },
		"CreateSilence": func() error {
			_, err := c.CreateSilence(ctx, map[string]string{"host": "web-*", "end": "2025-01-01T02:00:00Z", "author": "ana"})
			return err
		},
		"Counts": func() error { _, err := c.Counts(ctx, q); return err },
		"Top":    func() error { _, err := c.Top(ctx, url.Values{"keyword": {"Error"}, "by": {"host"}}); return err },
	}
	for name, call := range calls {
		mu.Lock()
		got = nil
		mu.Unlock()
		if err := call(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		mu.Lock()
		reqs := got
		mu.Unlock()
		if len(reqs) != 1 {
			t.Fatalf("%s: %d requests, want 1", name, len(reqs))
		}
		if err := d.CheckRequest(reqs[0].req, reqs[0].body); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

package client

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestErrorsKeepTheAPIErrorShapeAndTheTokenIsSent(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Authorization") != "Bearer tok":
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"missing or invalid bearer token"}`))
		case r.URL.Path == "/api/v1/rules" && r.Method == http.MethodPost:
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte(`{"error":"a rule called \"x\" exists","fields":[{"field":"name","message":"taken"}]}`))
		case r.URL.Path == "/api/v1/alerts":
			w.Write([]byte(`{"alerts":[],"state":"` + r.URL.Query().Get("state") + `"}`))
		default:
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("upstream gone"))
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	tests := []struct {
		name   string
		call   func(c *Client) error
		status int
		want   string
	}{
		{"409 with fields", func(c *Client) error { _, err := c.CreateRule(ctx, []byte(`{}`)); return err }, 409, `POST /api/v1/rules: 409 a rule called "x" exists`},
		{"a body that is not the error shape", func(c *Client) error { return c.DeleteRule(ctx, "r1") }, 502, "502 upstream gone"},
		{"ok, with a query", func(c *Client) error {
			raw, err := c.Alerts(ctx, "firing")
			if err == nil && !strings.Contains(string(raw), `"state":"firing"`) {
				t.Errorf("alerts answer %s", raw)
			}
			return err
		}, 0, ""},
	}
	c := New(srv.URL+"/", "tok")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(c)
			if tt.status == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !IsStatus(err, tt.status) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v: want status %d and %q", err, tt.status, tt.want)
			}
		})
	}
	_, err := New(srv.URL, "wrong").Alerts(ctx, "")
	if !IsStatus(err, http.StatusUnauthorized) {
		t.Errorf("wrong token: %v, want 401", err)
	}
}

package api

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// decodeError reads an error body strictly: exactly {error, fields}, with a
// message, and fields (when present) naming a field each.
func decodeError(t *testing.T, resp *http.Response, body []byte) Error {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("content type %q, want application/json; body %s", ct, body)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var e Error
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("error body %s is not {error, fields}: %v", body, err)
	}
	if e.Error == "" {
		t.Fatalf("error body %s without a message", body)
	}
	for _, f := range e.Fields {
		if f.Field == "" || f.Message == "" {
			t.Fatalf("error body %s: a field without a name or message", body)
		}
	}
	return e
}

func fieldNames(e Error) []string {
	var names []string
	for _, f := range e.Fields {
		names = append(names, f.Field)
	}
	return names
}

// send makes one request with the bearer token (none if "").
func send(t *testing.T, method, url, token, body string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

// routes is one request to every /api/v1 route, each valid as far as the
// request goes; {id} is an id nothing has.
var routes = []struct{ method, path, body string }{
	{http.MethodGet, "/counts?keyword=x&from=2025-03-01T11:00:00Z&to=2025-03-01T12:00:00Z", ""},
	{http.MethodGet, "/counts/top?keyword=x", ""},
	{http.MethodPost, "/rules", ruleBody},
	{http.MethodGet, "/rules", ""},
	{http.MethodGet, "/rules/r0000000000000000", ""},
	{http.MethodPut, "/rules/r0000000000000000", ruleBody},
	{http.MethodDelete, "/rules/r0000000000000000", ""},
	{http.MethodPost, "/silences", `{"host":"web-*","end":"2025-03-01T14:00:00Z","author":"ana"}`},
	{http.MethodGet, "/silences", ""},
	{http.MethodGet, "/silences/s0000000000000000", ""},
	{http.MethodDelete, "/silences/s0000000000000000", ""},
	{http.MethodGet, "/alerts", ""},
	{http.MethodGet, "/alerts/a0000000000000000", ""},
	{http.MethodPost, "/alerts/a0000000000000000/ack", `{"by":"ana"}`},
	{http.MethodPost, "/alerts/a0000000000000000/resolve", ""},
	{http.MethodGet, "/outbox", ""},
}

func TestEveryRouteAnswers401InTheErrorShape(t *testing.T) {
	f := newAlertFixture(t, nil)
	for _, rt := range routes {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			resp, body := send(t, rt.method, f.url+rt.path, "", rt.body)
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %d, want 401: %s", resp.StatusCode, body)
			}
			if e := decodeError(t, resp, body); len(e.Fields) != 0 {
				t.Errorf("401 with fields: %s", body)
			}
		})
	}
}

func TestEveryRouteNamesTheBadInputInTheErrorShape(t *testing.T) {
	f := newAlertFixture(t, nil)
	status, body := f.do(http.MethodPost, "/rules", ruleBody)
	if status != http.StatusCreated {
		t.Fatalf("create rule: %d %s", status, body)
	}
	ruleID := decode[map[string]any](t, body)["id"].(string)
	tests := []struct {
		name         string
		method, path string
		body         string
		status       int
		field        string // one of the fields the answer must name; "" for none
	}{
		{"counts: a time that is not RFC 3339", "GET", "/counts?keyword=x&from=yesterday&to=2025-03-01T12:00:00Z", "", 400, "from"},
		{"counts: keyword missing", "GET", "/counts?from=2025-03-01T11:00:00Z&to=2025-03-01T12:00:00Z", "", 400, "keyword"},
		{"top: a window that is not a duration", "GET", "/counts/top?keyword=x&window=soon", "", 400, "window"},
		{"top: a limit out of range", "GET", "/counts/top?keyword=x&limit=0", "", 400, "limit"},
		{"create rule: unknown field", "POST", "/rules", `{"colour":1}`, 400, "colour"},
		{"create rule: body not JSON", "POST", "/rules", `{"name":`, 400, "body"},
		{"create rule: body over the limit", "POST", "/rules", `{"name":"` + strings.Repeat("x", DefaultMaxBodyBytes) + `"}`, 413, "body"},
		{"update rule: empty keywords", "PUT", "/rules/" + ruleID, `{"name":"x","keywords":[]}`, 400, "keywords"},
		{"update rule: body over the limit", "PUT", "/rules/" + ruleID, strings.Repeat(" ", DefaultMaxBodyBytes+1), 413, "body"},
		{"get rule: no such id", "GET", "/rules/r0000000000000000", "", 404, ""},
		{"delete rule: no such id", "DELETE", "/rules/r0000000000000000", "", 404, ""},
		{"create silence: unknown field", "POST", "/silences", `{"end":"2025-03-01T14:00:00Z","colour":1}`, 400, "colour"},
		{"list silences: active not a boolean", "GET", "/silences?active=maybe", "", 400, "active"},
		{"get silence: no such id", "GET", "/silences/s0000000000000000", "", 404, ""},
		{"delete silence: no such id", "DELETE", "/silences/s0000000000000000", "", 404, ""},
		{"list alerts: unknown state", "GET", "/alerts?state=open", "", 400, "state"},
		{"list alerts: limit not a number", "GET", "/alerts?limit=ten", "", 400, "limit"},
		{"get alert: no such id", "GET", "/alerts/a0000000000000000", "", 404, ""},
		{"ack: unknown field", "POST", "/alerts/a0000000000000000/ack", `{"who":"x"}`, 400, "who"},
		{"ack: no such alert", "POST", "/alerts/a0000000000000000/ack", `{"by":"ana"}`, 404, ""},
		{"resolve: by not a string", "POST", "/alerts/a0000000000000000/resolve", `{"by":5}`, 400, "by"},
		{"unknown path under /api/v1", "GET", "/nothing", "", 404, ""},
		{"method not allowed", "DELETE", "/outbox", "", 405, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := send(t, tt.method, f.url+tt.path, "tok-a", tt.body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			e := decodeError(t, resp, body)
			names := fieldNames(e)
			if tt.field == "" && len(names) != 0 {
				t.Errorf("fields %v, want none", names)
			}
			if tt.field != "" && (!slices.Contains(names, tt.field) || !strings.Contains(e.Error, tt.field)) {
				t.Errorf("error %+v, want fields and message naming %q", e, tt.field)
			}
		})
	}
}

func TestMethodNotAllowedListsTheAllowedMethods(t *testing.T) {
	f := newAlertFixture(t, nil)
	resp, body := send(t, http.MethodPatch, f.url+"/rules/r1", "tok-a", "")
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, PUT, DELETE" {
		t.Fatalf("%d Allow %q: %s", resp.StatusCode, resp.Header.Get("Allow"), body)
	}
	decodeError(t, resp, body)
}

func TestPanicIs500InTheErrorShape(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := httptest.NewServer(recoverer(log)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") })))
	defer srv.Close()
	resp, body := send(t, http.MethodGet, srv.URL, "", "")
	if resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if e := decodeError(t, resp, body); e.Error != "internal error" || strings.Contains(string(body), "boom") {
		t.Errorf("panic answer %s, want internal error without the panic value", body)
	}
}

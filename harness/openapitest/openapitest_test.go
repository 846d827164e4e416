package openapitest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

const spec = `openapi: 3.1.0
info: {title: t, version: "1"}
paths:
  /things:
    post:
      operationId: createThing
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              additionalProperties: false
              required: [name]
              properties:
                name: {type: string}
      responses:
        "201":
          description: created
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Thing"}
        default:
          description: error
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Error"}
  /things/{id}:
    get:
      operationId: getThing
      parameters:
        - {name: id, in: path, required: true, schema: {type: string}}
        - {name: limit, in: query, schema: {type: integer, maximum: 10}}
      responses:
        "200":
          description: the thing
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Detail"}
        default:
          description: error
          content:
            application/json:
              schema: {$ref: "#/components/schemas/Error"}
components:
  schemas:
    Error:
      type: object
      additionalProperties: false
      required: [error]
      properties:
        error: {type: string}
    Fields:
      type: object
      required: [id]
      properties:
        id: {type: string}
        group_by:
          oneOf:
            - type: string
            - type: array
              items: {type: string}
    Thing:
      allOf: [{$ref: "#/components/schemas/Fields"}]
      unevaluatedProperties: false
    Detail:
      allOf: [{$ref: "#/components/schemas/Fields"}]
      properties:
        extra: {type: integer}
      unevaluatedProperties: false
`

func TestCheck(t *testing.T) {
	d := MustLoad(t, []byte(spec))
	const json = "application/json"
	tests := []struct {
		name         string
		method, path string
		reqBody      string
		status       int
		ctype        string
		respBody     string
		wantErr      string // substring of the error; "" for none
	}{
		{"valid exchange", "POST", "/things", `{"name":"a"}`, 201, json, `{"id":"t1"}`, ""},
		{"answer without a Content-Type", "POST", "/things", `{"name":"a"}`, 201, "", `{"id":"t1"}`, "Content-Type"},
		{"invalid request refused by the server", "POST", "/things", `{"colour":1}`, 400, json, `{"error":"bad"}`, ""},
		{"invalid request the server took", "POST", "/things", `{"colour":1}`, 201, json, `{"id":"t1"}`, "took (201) a request the document refuses"},
		{"answer missing a required field", "POST", "/things", `{"name":"a"}`, 201, json, `{}`, "missing property 'id'"},
		{"answer with an undocumented field", "POST", "/things", `{"name":"a"}`, 201, json, `{"id":"t1","colour":1}`, "colour"},
		{"allOf extension allows its own field", "GET", "/things/t1", "", 200, json, `{"id":"t1","extra":2}`, ""},
		{"group_by as a list", "GET", "/things/t1", "", 200, json, `{"id":"t1","group_by":["a","b"]}`, ""},
		{"group_by of the wrong type", "GET", "/things/t1", "", 200, json, `{"id":"t1","group_by":5}`, "group_by"},
		{"error answer not in the Error shape", "POST", "/things", `{"name":"a"}`, 500, json, `{"message":"x"}`, "does not match"},
		{"undocumented success status", "GET", "/things/t1", "", 202, json, `{"error":"x"}`, ""},
		{"unknown query parameters pass", "GET", "/things/t1?label.app=web&x=1", "", 200, json, `{"id":"t1"}`, ""},
		{"a bad documented query parameter the server took", "GET", "/things/t1?limit=99", "", 200, json, `{"id":"t1"}`, "limit"},
		{"trailing slash", "POST", "/things/", `{"name":"a"}`, 201, json, `{"id":"t1"}`, ""},
		{"undocumented path answered 404 in the Error shape", "GET", "/nothing", "", 404, json, `{"error":"no such endpoint"}`, ""},
		{"undocumented path answered 404 otherwise", "GET", "/nothing", "", 404, "text/plain", `404 page not found`, "Content-Type"},
		{"undocumented method answered 405", "DELETE", "/things", "", 405, json, `{"error":"method not allowed"}`, ""},
		{"undocumented path answered 200", "GET", "/nothing", "", 200, json, `{}`, "not in the document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Requests carry no Content-Type: the server reads bodies as JSON.
			req := httptest.NewRequest(tt.method, "http://127.0.0.1:1"+tt.path, nil)
			h := http.Header{}
			if tt.ctype != "" {
				h.Set("Content-Type", tt.ctype)
			}
			err := d.Check(req, []byte(tt.reqBody), tt.status, h, []byte(tt.respBody))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestHandlerFailsTheTestOnAMismatch(t *testing.T) {
	d := MustLoad(t, []byte(spec))
	ft := &fakeTB{TB: t}
	srv := httptest.NewServer(d.Handler(ft, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"name":"no id"}`))
	})))
	resp, err := http.Post(srv.URL+"/things", "application/json", strings.NewReader(`{"name":"a"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	srv.Close() // waits for the handler, which checks after answering
	if len(ft.errs) != 1 || !strings.Contains(ft.errs[0], "createThing") {
		t.Fatalf("errors %q, want one naming createThing", ft.errs)
	}
}

type fakeTB struct {
	testing.TB
	errs []string
}

func (f *fakeTB) Errorf(format string, args ...any) {
	f.errs = append(f.errs, strings.TrimSpace(strings.SplitN(fmt.Sprintf(format, args...), "\n", 2)[0]))
}

func TestCheckRequest(t *testing.T) {
	d := MustLoad(t, []byte(spec))
	tests := []struct {
		name, method, path, body, wantErr string
	}{
		{"documented", "POST", "/things", `{"name":"a"}`, ""},
		{"documented with a path parameter", "GET", "/things/t1?limit=3", "", ""},
		{"body the document refuses", "POST", "/things", `{"colour":1}`, "createThing"},
		{"path not in the document", "GET", "/nothing", "", "not in the document"},
		{"method not in the document", "DELETE", "/things/t1", "", "not in the document"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := d.CheckRequest(httptest.NewRequest(tt.method, tt.path, nil), []byte(tt.body))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// Test servers answer requests concurrently; run under -race.
func TestCheckIsSafeForConcurrentUse(t *testing.T) {
	d := MustLoad(t, []byte(spec))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				req := httptest.NewRequest("GET", "/things/t1?limit=3", nil)
				h := http.Header{"Content-Type": {"application/json"}}
				if err := d.Check(req, nil, 200, h, []byte(`{"id":"t1","group_by":["a"]}`)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

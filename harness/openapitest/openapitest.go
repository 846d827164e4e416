// Package openapitest checks HTTP exchanges against an OpenAPI 3.1
// document (keyalertd's backend/api/openapi.yaml), so the API's tests fail
// when the server and its description drift apart.
//
// Every answer is validated against the operation's response for its
// status (an undocumented 2xx fails; errors fall to the Error schema of
// `default`). A request is validated too, but one the document refuses
// only fails the test when the server took it (2xx): tests send invalid
// requests on purpose to see them refused. A path or method the document
// does not have fails unless the server answered 404 or 405, whose body
// must still be the Error schema.
package openapitest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Doc is a loaded, validated OpenAPI document and its router.
type Doc struct {
	T      *openapi3.T
	router routers.Router
	bodies *bodies

	mu sync.Mutex
	// seen counts the checked answers per operation id and status.
	seen map[string]map[int]int
}

var (
	mu    sync.Mutex
	cache = map[string]*Doc{}
)

// Load parses and validates spec (YAML or JSON); the same bytes are
// loaded once per process.
func Load(spec []byte) (*Doc, error) {
	mu.Lock()
	defer mu.Unlock()
	if d, ok := cache[string(spec)]; ok {
		return d, nil
	}
	loader := openapi3.NewLoader()
	t, err := loader.LoadFromData(spec)
	if err != nil {
		return nil, fmt.Errorf("openapi: load: %w", err)
	}
	if err := t.Validate(loader.Context); err != nil {
		return nil, fmt.Errorf("openapi: invalid document: %w", err)
	}
	r, err := gorillamux.NewRouter(t)
	if err != nil {
		return nil, fmt.Errorf("openapi: router: %w", err)
	}
	b, err := newBodies(t)
	if err != nil {
		return nil, err
	}
	d := &Doc{T: t, router: r, bodies: b, seen: map[string]map[int]int{}}
	cache[string(spec)] = d
	return d, nil
}

// MustLoad is Load failing tb.
func MustLoad(tb testing.TB, spec []byte) *Doc {
	tb.Helper()
	d, err := Load(spec)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// Handler serves h, checking every exchange against the document and
// failing tb on a mismatch. Use it in place of h in httptest.NewServer.
func (d *Doc) Handler(tb testing.TB, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []byte
		if r.Body != nil {
			body, _ = io.ReadAll(r.Body)
			r.Body.Close()
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		sent := r.Clone(r.Context()) // as sent, whatever the handler does to r
		rec := &recorder{ResponseWriter: w, status: http.StatusOK}
		h.ServeHTTP(rec, r)
		if err := d.Check(sent, body, rec.status, w.Header(), rec.body.Bytes()); err != nil {
			tb.Errorf("%v", err)
		}
	})
}

// recorder passes an answer through, keeping its status and a copy of its
// body.
type recorder struct {
	http.ResponseWriter
	status int
	wrote  bool
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.status, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	r.body.Write(b)
	return r.ResponseWriter.Write(b)
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Client returns an HTTP client whose exchanges are checked as Handler
// checks them, for servers the test cannot wrap (another process, a
// server built by the code under test).
func (d *Doc) Client(tb testing.TB, c *http.Client) *http.Client {
	if c == nil {
		c = &http.Client{}
	}
	out := *c
	base := c.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	out.Transport = roundTripper{d: d, tb: tb, base: base}
	return &out
}

type roundTripper struct {
	d    *Doc
	tb   testing.TB
	base http.RoundTripper
}

func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	resp, err := rt.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	rb, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	resp.Body = io.NopCloser(bytes.NewReader(rb))
	if err != nil {
		return resp, err
	}
	if err := rt.d.Check(req, body, resp.StatusCode, resp.Header, rb); err != nil {
		rt.tb.Errorf("%v", err)
	}
	return resp, nil
}

// Check validates one exchange: the request (its body apart, as it was
// sent) and the answer's status, headers and body. See the package comment
// for when a request the document refuses is an error.
func (d *Doc) Check(req *http.Request, reqBody []byte, status int, header http.Header, respBody []byte) error {
	r := req.Clone(context.Background())
	// The router's paths have no trailing slash; chi serves both forms.
	u := *req.URL
	if len(u.Path) > 1 {
		u.Path = strings.TrimSuffix(u.Path, "/")
		u.RawPath = ""
	}
	r.URL = &u
	r.Body = io.NopCloser(bytes.NewReader(reqBody))
	if len(reqBody) > 0 && r.Header.Get("Content-Type") == "" {
		// The server reads every body as JSON whatever its type.
		r.Header.Set("Content-Type", "application/json")
	}
	op := req.Method + " " + req.URL.Path
	route, params, err := d.router.FindRoute(r)
	if err != nil {
		if status != http.StatusNotFound && status != http.StatusMethodNotAllowed {
			return fmt.Errorf("openapi: %s answered %d but is not in the document: %v", op, status, err)
		}
		return d.checkError(op, status, header, respBody)
	}
	d.note(route.Operation.OperationID, status)
	in, reqErr := d.checkRequest(r, route, params, reqBody)
	if reqErr != nil && status >= 200 && status < 300 {
		return fmt.Errorf("openapi: %s (%s): the server took (%d) a request the document refuses: %s\nrequest body: %s",
			op, route.Operation.OperationID, status, brief(reqErr), clip(reqBody))
	}
	// The response is checked whatever the request was: status and
	// headers by kin-openapi, the body by the compiled schemas.
	in.Options = &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true, ExcludeResponseBody: true}
	err = openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: status, Header: header,
		Body: io.NopCloser(bytes.NewReader(respBody)), Options: in.Options,
	})
	if err == nil {
		err = d.bodies.response(route, status, headerCT(header), respBody)
	}
	if err != nil {
		return fmt.Errorf("openapi: %s (%s): answer %d does not match the document: %s\nanswer: %s",
			op, route.Operation.OperationID, status, brief(err), clip(respBody))
	}
	return nil
}

func (d *Doc) note(op string, status int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.seen[op] == nil {
		d.seen[op] = map[int]int{}
	}
	d.seen[op][status]++
}

// Unexercised lists the operation ids no checked exchange has reached
// with a 2xx answer so far (in this process), sorted.
func (d *Doc) Unexercised() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []string
	for _, p := range d.T.Paths.InMatchingOrder() {
		for _, op := range d.T.Paths.Value(p).Operations() {
			ok := false
			for st := range d.seen[op.OperationID] {
				ok = ok || st >= 200 && st < 300
			}
			if !ok {
				out = append(out, op.OperationID)
			}
		}
	}
	slices.Sort(out)
	return out
}

// checkRequest validates a request routed to route: parameters and
// security by kin-openapi, the body by the compiled schemas.
func (d *Doc) checkRequest(r *http.Request, route *routers.Route, params map[string]string, body []byte) (*openapi3filter.RequestValidationInput, error) {
	in := &openapi3filter.RequestValidationInput{
		Request: r, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true, ExcludeRequestBody: true},
	}
	err := openapi3filter.ValidateRequest(context.Background(), in)
	if err == nil {
		err = d.bodies.request(route, r.Header.Get("Content-Type"), body)
	}
	return in, err
}

// checkError validates the answer of an undocumented path or method: the
// Error schema.
func (d *Doc) checkError(op string, status int, header http.Header, body []byte) error {
	s, err := d.bodies.schema("/components/schemas/Error")
	if err != nil {
		return err
	}
	if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("openapi: %s: answer %d has Content-Type %q, want application/json", op, status, ct)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("openapi: %s: answer %d is not JSON: %v", op, status, err)
	}
	if err := s.Validate(v); err != nil {
		return fmt.Errorf("openapi: %s: answer %d is not the Error schema: %s\nanswer: %s", op, status, brief(err), clip(body))
	}
	return nil
}

// brief is err's message without the dumps of schema and value that
// kin-openapi appends (the indented lines after "Schema:" and "Value:"):
// the answer is printed once, in full, next to it.
func brief(err error) string {
	var keep []string
	dump := false
	for _, l := range strings.Split(err.Error(), "\n") {
		switch {
		case l == "Schema:" || l == "Value:":
			dump = true
			continue
		case dump && (l == "" || strings.HasPrefix(l, " ")):
			continue
		}
		dump = false
		keep = append(keep, l)
	}
	return strings.Join(keep, "\n")
}

func clip(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "…"
	}
	return string(b)
}

// CheckRequest validates a request alone (its body apart, as sent), for a
// client's tests against a stand-in server.
func (d *Doc) CheckRequest(req *http.Request, body []byte) error {
	r := req.Clone(context.Background())
	r.Body = io.NopCloser(bytes.NewReader(body))
	if len(body) > 0 && r.Header.Get("Content-Type") == "" {
		r.Header.Set("Content-Type", "application/json")
	}
	op := req.Method + " " + req.URL.Path
	route, params, err := d.router.FindRoute(r)
	if err != nil {
		return fmt.Errorf("openapi: %s is not in the document: %v", op, err)
	}
	if _, err := d.checkRequest(r, route, params, body); err != nil {
		return fmt.Errorf("openapi: %s (%s): the document refuses the request: %s", op, route.Operation.OperationID, brief(err))
	}
	return nil
}

// Operations lists the document's operations as "METHOD /path".
func (d *Doc) Operations() []string {
	var out []string
	for _, p := range d.T.Paths.InMatchingOrder() {
		for m := range d.T.Paths.Value(p).Operations() {
			out = append(out, m+" "+p)
		}
	}
	return out
}

package api

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/keyalert/keyalert/backend/receiver"
	"github.com/keyalert/keyalert/backend/session"
	"github.com/keyalert/keyalert/backend/timeinterval"
	"github.com/keyalert/keyalert/harness/openapitest"
	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/stream"
)

// checked serves h with every request and answer checked against
// openapi.yaml (package openapitest): every test server of this package
// goes through it.
func checked(t testing.TB, h http.Handler) http.Handler {
	t.Helper()
	return openapitest.MustLoad(t, openapiYAML).Handler(t, h)
}

func TestOpenAPIDocumentIsValid31WithOneErrorSchema(t *testing.T) {
	d := openapitest.MustLoad(t, openapiYAML)
	if !strings.HasPrefix(d.T.OpenAPI, "3.1.") {
		t.Errorf("openapi %q, want 3.1.x", d.T.OpenAPI)
	}
	errRef := "#/components/schemas/Error"
	for path, item := range d.T.Paths.Map() {
		for method, op := range item.Operations() {
			name := method + " " + path
			if op.OperationID == "" {
				t.Errorf("%s: no operationId", name)
			}
			if op.Responses.Default() == nil {
				t.Errorf("%s: no default (error) response", name)
			}
			for status, resp := range op.Responses.Map() {
				if !strings.HasPrefix(status, "4") && !strings.HasPrefix(status, "5") && status != "default" {
					continue
				}
				mt := resp.Value.Content.Get("application/json")
				if mt == nil || mt.Schema == nil || mt.Schema.Ref != errRef {
					t.Errorf("%s %s: answer is not %s", name, status, errRef)
				}
			}
		}
	}
}

// fullRouter is the router with every optional part configured, so every
// route is registered.
func fullRouter(t *testing.T) *chi.Mux {
	t.Helper()
	rdb := redistest.Start(t).Client()
	nowf := func() time.Time { return now }
	o := storeOptions(rdb, nowf, slog.New(slog.NewTextHandler(io.Discard, nil)))
	o.Tokens = []string{"tok-a"}
	o.Receivers = receiver.NewStore(rdb, receiver.Options{}, nowf)
	o.TimeIntervals = timeinterval.NewStore(rdb, timeinterval.Options{}, nowf)
	o.Sessions = session.NewStore(rdb, session.Options{})
	o.Ingest = IngestSource{Redis: rdb, Stream: stream.DefaultStream, Dead: stream.HashTag(stream.DefaultStream) + ":dead", Group: "keyalertd"}
	h, err := NewRouter(o)
	if err != nil {
		t.Fatal(err)
	}
	return h.(*chi.Mux)
}

// TestEveryRouteIsInTheOpenAPIDocumentAndBack walks the chi router: each
// route must be an operation of the document, and each operation a route.
func TestEveryRouteIsInTheOpenAPIDocumentAndBack(t *testing.T) {
	d := openapitest.MustLoad(t, openapiYAML)
	var routed []string
	err := chi.Walk(fullRouter(t), func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if len(route) > 1 {
			route = strings.TrimSuffix(route, "/") // chi serves /rules and /rules/ alike
		}
		routed = append(routed, method+" "+route)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	documented := d.Operations()
	slices.Sort(routed)
	slices.Sort(documented)
	for _, r := range routed {
		if !slices.Contains(documented, r) {
			t.Errorf("route %s is not in openapi.yaml", r)
		}
	}
	for _, op := range documented {
		if !slices.Contains(routed, op) {
			t.Errorf("openapi.yaml has %s, which the router does not serve", op)
		}
	}
	if len(routed) < 30 {
		t.Errorf("walked only %d routes: %v", len(routed), routed)
	}
}

func TestOpenAPIDocumentIsServedWithoutAuth(t *testing.T) {
	srv := httptest.NewServer(checked(t, fullRouter(t)))
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + OpenAPIPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/yaml" || string(b) != string(openapiYAML) {
		t.Fatalf("GET %s: %d %q, %d bytes; want 200 application/yaml, the embedded %d bytes",
			OpenAPIPath, resp.StatusCode, resp.Header.Get("Content-Type"), len(b), len(openapiYAML))
	}
}

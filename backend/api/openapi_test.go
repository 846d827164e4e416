package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
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

// TestOpenAPIDescribesTheLabelShapes: the label fields (issue #12) are in
// the description as optional shapes, so a server with labels and one
// without both validate against it.
func TestOpenAPIDescribesTheLabelShapes(t *testing.T) {
	d := openapitest.MustLoad(t, openapiYAML)
	ts := `"created_at":"2025-03-01T12:00:00Z","updated_at":"2025-03-01T12:00:00Z"`
	alert := `"id":"a1","dedup_key":"k","rule_id":"r1","rule_name":"n","group":"namespace=shop,app=web","keywords":["x"],
		"keyword_ids":["substring:x"],"severity":"error","state":"firing","count":3,"started_at":"2025-03-01T12:00:00Z",
		"notified":true,"updated_at":"2025-03-01T12:00:00Z","history":[]`
	schemas := []struct {
		name, schema, doc string
		invalid           bool // the shape must be refused
	}{
		{"rule grouped by a label list with label filters", "Rule", `{"id":"r1","name":"n","keywords":["x"],"ignore_case":false,
			"match":"substring","condition":{"type":"threshold","count":1,"window":"5m"},"group_by":["namespace","app"],
			"filters":{"host":"web-*","namespace":"shop-*"},"severity":"error","pagerduty":{},"repeat_interval":"0s",
			"resolve_after":"5m","enabled":true,` + ts + `}`, false},
		{"rule grouped by one label", "RuleInput", `{"name":"n","keywords":["x"],"group_by":"namespace"}`, false},
		{"alert with labels", "Alert", `{` + alert + `,"group_by":["namespace","app"],"labels":{"namespace":"shop","app":"web"}}`, false},
		{"alert without labels", "Alert", `{` + alert + `,"group_by":"host"}`, false},
		{"alert detail with labelled samples", "AlertDetail", `{` + alert + `,"group_by":"app","labels":{"app":"web"},
			"counts_per_minute":{"2025-03-01T12:00:00Z":3},"sample_lines":[{"minute":1740830400,"host":"h","tag":"t","labels":{"app":"web"},"line":"x"}]}`, false},
		{"silence with label matchers", "SilenceInput", `{"labels":{"namespace":"shop-*"},"end":"2025-03-01T14:00:00Z","author":"ana"}`, false},
		{"stored silence with labels", "Silence", `{"id":"s1","labels":{"app":"web"},"start":"2025-03-01T12:00:00Z",
			"end":"2025-03-01T14:00:00Z","author":"ana","created_at":"2025-03-01T12:00:00Z","active":true}`, false},
		{"counts with by and labels", "Counts", `{"keyword":"x","id":"substring:x","from":"2025-03-01T12:00:00Z",
			"to":"2025-03-01T13:00:00Z","points":[],"total":0,"counted":true,"by":"namespace",
			"series":[{"value":"shop","labels":{"namespace":"shop"},"points":[{"minute":"2025-03-01T12:00:00Z","count":4}],"total":4}]}`, false},
		{"top by a label", "Top", `{"keyword":"x","id":"substring:x","by":"namespace","window":"15m","from":"2025-03-01T12:00:00Z",
			"to":"2025-03-01T12:15:00Z","items":[{"value":"shop","count":4,"labels":{"namespace":"shop"}}],"total":4,"counted":true}`, false},
		{"group_by of another type", "RuleInput", `{"name":"n","keywords":["x"],"group_by":5}`, true},
		{"label values that are not strings", "Alert", `{` + alert + `,"group_by":"app","labels":{"app":1}}`, true},
		{"alert with an undocumented field", "Alert", `{` + alert + `,"group_by":"app","colour":"red"}`, true},
	}
	for _, tt := range schemas {
		t.Run(tt.name, func(t *testing.T) {
			checkSchema(t, d, tt.schema, tt.doc, tt.invalid)
		})
	}
	for _, q := range []string{
		"/api/v1/counts?keyword=x&from=2025-03-01T12:00:00Z&to=2025-03-01T13:00:00Z&by=namespace&label.namespace=shop-*&label.app=web",
		"/api/v1/counts/top?keyword=x&by=app&label.namespace=shop",
	} {
		if err := d.CheckRequest(httptest.NewRequest(http.MethodGet, q, nil), nil); err != nil {
			t.Errorf("%s: %v", q, err)
		}
	}
}

// TestOpenAPIRefusesSecretsInClear: answers carry routing keys, webhook
// URLs and HMAC secrets redacted, and the description says so, so every
// checked answer checks the redaction too.
func TestOpenAPIRefusesSecretsInClear(t *testing.T) {
	d := openapitest.MustLoad(t, openapiYAML)
	ts := `"created_at":"2025-03-01T12:00:00Z","updated_at":"2025-03-01T12:00:00Z"`
	tests := []struct {
		name, schema, doc string
		invalid           bool
	}{
		{"redacted routing key", "Receiver", `{"name":"pd","type":"pagerduty","routing_key":"****************************BCDE",` + ts + `}`, false},
		{"routing key in clear", "Receiver", `{"name":"pd","type":"pagerduty","routing_key":"R0123456789abcdef0123456789ABCDE",` + ts + `}`, true},
		{"short secret all stars", "Receiver", `{"name":"h","type":"webhook","url":"****************ABCD","secret":"********",` + ts + `}`, false},
		{"webhook URL in clear", "Receiver", `{"name":"h","type":"webhook","url":"https://hooks.example/in","secret":"********",` + ts + `}`, true},
		{"alertmanager URL with its password redacted", "Receiver", `{"name":"am","type":"alertmanager","url":"http://user:xxxxx@am.example:9093",` + ts + `}`, false},
		{"rule routing key in clear", "Rule", `{"id":"r1","name":"n","keywords":["x"],"ignore_case":false,"match":"substring",
			"condition":{"type":"threshold","count":1,"window":"5m"},"group_by":"none","filters":{},"severity":"error",
			"pagerduty":{"routing_key":"R0123456789abcdef0123456789ABCDE"},"repeat_interval":"0s","resolve_after":"5m","enabled":true,` + ts + `}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkSchema(t, d, tt.schema, tt.doc, tt.invalid)
		})
	}
}

// checkSchema validates the JSON doc against the document's named schema
// and fails the test unless it is refused exactly when invalid.
func checkSchema(t *testing.T, d *openapitest.Doc, schema, doc string, invalid bool) {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(doc), &v); err != nil {
		t.Fatal(err)
	}
	err := d.T.Components.Schemas[schema].Value.VisitJSON(v, openapi3.EnableJSONSchema2020())
	if (err != nil) != invalid {
		t.Fatalf("%s: error %v, want refused: %v", schema, err, invalid)
	}
}

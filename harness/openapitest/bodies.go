package openapitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/routers"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// bodies validates JSON bodies with JSON Schema 2020-12 schemas compiled
// once each. kin-openapi compiles a 3.1 document's schema again on every
// validation (about 4 ms a request and answer), which on a busy machine
// slowed the API tests' timed answers; compiled once, a check takes
// microseconds. The whole document is the schema resource, so its
// "#/components/..." references resolve as they do in it.
type bodies struct {
	mu       sync.Mutex
	compiler *jsonschema.Compiler
	compiled map[string]*jsonschema.Schema
}

const docURL = "mem://openapi.json"

func newBodies(t *openapi3.T) (*bodies, error) {
	raw, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("openapi: marshal: %w", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("openapi: unmarshal: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat() // date-time and the like are checked, not only annotations
	if err := c.AddResource(docURL, doc); err != nil {
		return nil, fmt.Errorf("openapi: schema resource: %w", err)
	}
	return &bodies{compiler: c, compiled: map[string]*jsonschema.Schema{}}, nil
}

// schema compiles (once) the schema at ptr, a JSON pointer into the
// document.
func (b *bodies) schema(ptr string) (*jsonschema.Schema, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s, ok := b.compiled[ptr]; ok {
		return s, nil
	}
	s, err := b.compiler.Compile(docURL + "#" + ptr)
	if err != nil {
		return nil, fmt.Errorf("openapi: compile %s: %w", ptr, err)
	}
	b.compiled[ptr] = s
	return s, nil
}

// validate checks body, of media type ct, against the content at ptr (a
// pointer to a Content object): its media type must be there, and a JSON
// body must match its schema; other bodies (YAML, Prometheus text) are
// checked for their type only.
func (b *bodies) validate(content openapi3.Content, ptr, ct string, body []byte) error {
	mt := content.Get(ct)
	if mt == nil {
		return fmt.Errorf("Content-Type %q is not documented", ct)
	}
	key := ""
	for k, v := range content {
		if v == mt {
			key = k
		}
	}
	base, _, _ := mime.ParseMediaType(key)
	if mt.Schema == nil || base != "application/json" {
		return nil
	}
	s, err := b.schema(ptr + "/" + escape(key) + "/schema")
	if err != nil {
		return err
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("body is not JSON: %v", err)
	}
	return s.Validate(v)
}

// request checks a request body against the operation's.
func (b *bodies) request(route *routers.Route, ct string, body []byte) error {
	rb := route.Operation.RequestBody
	if rb == nil || rb.Value == nil {
		if len(body) > 0 {
			return fmt.Errorf("the operation takes no body")
		}
		return nil
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if rb.Value.Required {
			return fmt.Errorf("a body is required")
		}
		return nil
	}
	ptr := rb.Ref
	if ptr == "" {
		ptr = operationPtr(route) + "/requestBody"
	}
	return b.validate(rb.Value.Content, strings.TrimPrefix(ptr, "#")+"/content", ct, body)
}

// response checks an answer body against the operation's response for
// status (or its default).
func (b *bodies) response(route *routers.Route, status int, ct string, body []byte) error {
	key := strconv.Itoa(status)
	ref := route.Operation.Responses.Value(key)
	if ref == nil {
		key, ref = "default", route.Operation.Responses.Default()
	}
	if ref == nil || ref.Value == nil {
		return fmt.Errorf("status %d is not documented", status)
	}
	if len(ref.Value.Content) == 0 {
		if len(body) > 0 {
			return fmt.Errorf("status %d has no body in the document, got %d bytes", status, len(body))
		}
		return nil
	}
	ptr := ref.Ref
	if ptr == "" {
		ptr = operationPtr(route) + "/responses/" + escape(key)
	}
	return b.validate(ref.Value.Content, strings.TrimPrefix(ptr, "#")+"/content", ct, body)
}

// operationPtr points at the route's operation in the document.
func operationPtr(route *routers.Route) string {
	return "/paths/" + escape(route.Path) + "/" + strings.ToLower(route.Method)
}

// escape is a JSON pointer token (RFC 6901).
func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// headerCT is the Content-Type of h, "" when absent.
func headerCT(h http.Header) string { return h.Get("Content-Type") }

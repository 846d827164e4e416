package api

import (
	_ "embed"
	"net/http"
	"slices"
)

// openapiYAML is the OpenAPI 3.1 description of this package's routes,
// served at /api/v1/openapi.yaml; the tests check every exchange and every
// route against it.
//
//go:embed openapi.yaml
var openapiYAML []byte

// OpenAPIPath is where the description is served, without auth (it holds
// no data, and a client needs it before it has a token).
const OpenAPIPath = "/api/v1/openapi.yaml"

// OpenAPI returns the OpenAPI 3.1 description of the API (YAML).
func OpenAPI() []byte { return slices.Clone(openapiYAML) }

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(openapiYAML) // the client may be gone; nothing to do about it
}

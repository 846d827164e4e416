package openapitest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"
)

// The figures are in bench/openapi.md.

var benchRule = []byte(`{"id":"r1","name":"n","keywords":["x"],"ignore_case":false,"match":"substring",
	"condition":{"type":"threshold","count":1,"window":"5m"},"group_by":"host","filters":{},"severity":"error",
	"pagerduty":{"routing_key":"****ABCD"},"repeat_interval":"0s","resolve_after":"5m","enabled":true,
	"created_at":"2025-03-01T12:00:00Z","updated_at":"2025-03-01T12:00:00Z"}`)

func benchDoc(b *testing.B) *Doc {
	spec, err := os.ReadFile("../../backend/api/openapi.yaml")
	if err != nil {
		b.Fatal(err)
	}
	return MustLoad(b, spec)
}

// BenchmarkCheck is one PUT /api/v1/rules/{id} exchange, rule in and out,
// as the API tests check each.
func BenchmarkCheck(b *testing.B) {
	d := benchDoc(b)
	h := http.Header{"Content-Type": {"application/json"}}
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPut, "/api/v1/rules/r1", nil)
		if err := d.Check(req, benchRule, http.StatusOK, h, benchRule); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkKinOpenAPIBodies is the same exchange with kin-openapi
// validating the bodies too, which compiles the 3.1 schema each time: the
// reason the bodies have compiled schemas of their own.
func BenchmarkKinOpenAPIBodies(b *testing.B) {
	d := benchDoc(b)
	h := http.Header{"Content-Type": {"application/json"}}
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPut, "/api/v1/rules/r1", bytes.NewReader(benchRule))
		req.Header.Set("Content-Type", "application/json")
		route, params, err := d.router.FindRoute(req)
		if err != nil {
			b.Fatal(err)
		}
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc}}
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			b.Fatal(err)
		}
		if err := openapi3filter.ValidateResponse(context.Background(), &openapi3filter.ResponseValidationInput{
			RequestValidationInput: in, Status: http.StatusOK, Header: h, Body: io.NopCloser(bytes.NewReader(benchRule)),
		}); err != nil {
			b.Fatal(err)
		}
	}
}

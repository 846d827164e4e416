package rulesfile

import (
	"encoding/json"
	"testing"
)

const sample = `rules:
  - name: a
    keywords: [x, "y z"]
    condition:
      type: threshold
      window: 5m
    pagerduty: {routing_key: "${PD_KEY}"}
  - {name: b, keywords: [q]}
`

func TestLineOfFindsNestedFieldsAndListItems(t *testing.T) {
	items, err := Parse("f.yaml", []byte(sample))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		item  int
		field string
		line  int
	}{
		{0, "", 2}, {0, "name", 2}, {0, "keywords[1]", 3}, {0, "condition.window", 6},
		{0, "condition.count", 4}, // absent: the nearest part present
		{0, "colour", 2}, {1, "keywords[0]", 8},
	}
	for _, tt := range tests {
		if got := items[tt.item].LineOf(tt.field); got != tt.line {
			t.Errorf("item %d LineOf(%q) = %d, want %d", tt.item, tt.field, got, tt.line)
		}
	}
	if items[0].RoutingKeyRef != "PD_KEY" || items[1].Name != "b" {
		t.Errorf("items: %+v %+v", items[0], items[1])
	}
}

func TestExportReadsBackAsTheSameRules(t *testing.T) {
	docs := []json.RawMessage{
		json.RawMessage(`{"id":"r1","name":"a","keywords":["x"],"condition":{"type":"threshold","count":5,"window":"5m"},"pagerduty":{"routing_key":"****************************BCDE"},"created_at":"2026-01-01T00:00:00Z"}`),
	}
	for _, asJSON := range []bool{false, true} {
		out, err := Export(docs, false, asJSON, "header")
		if err != nil {
			t.Fatal(err)
		}
		items, err := Parse("x", out)
		if err != nil || len(items) != 1 {
			t.Fatalf("parse the export (json %v): %v\n%s", asJSON, err, out)
		}
		if it := items[0]; it.Name != "a" || it.ID != "" || it.RoutingKeyRef != "KEYALERT_ROUTING_KEY_BCDE" {
			t.Errorf("export read back (json %v): %+v\n%s", asJSON, it, out)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte(`[{"name":"j","keywords":["x"]}]`))
	f.Add([]byte("rules:\n"))
	f.Add([]byte("- &a {name: x}\n- *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		items, err := Parse("fuzz", data)
		if err != nil {
			return
		}
		for _, it := range items {
			if !json.Valid(it.Doc) {
				t.Fatalf("item %d: invalid JSON %q", it.Index, it.Doc)
			}
			_ = it.LineOf("condition.window")
			_ = it.LineOf("keywords[3]")
		}
	})
}

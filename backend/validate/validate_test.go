package validate

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestObjectDecodesKnownFieldsAndReportsTheRest(t *testing.T) {
	var name string
	var n int64
	var tags []string
	var errs Errors
	present := Object(json.RawMessage(`{"name":"x","n":"five","tags":["a"],"extra":1,"nil":null}`), "rule",
		map[string]any{"name": &name, "n": &n, "tags": &tags, "nil": &name}, &errs)
	if name != "x" || len(tags) != 1 || !present["name"] || present["n"] || present["nil"] {
		t.Fatalf("decoded name=%q tags=%v present=%v", name, tags, present)
	}
	want := "invalid fields: rule.extra: unknown field; rule.n: want an integer"
	if errs.Error() != want {
		t.Fatalf("got %q\nwant %q", errs.Error(), want)
	}
	if !errs.Has("rule.n") || errs.Has("rule.name") {
		t.Fatal("Has disagrees with the list")
	}
}

func TestObjectRejectsNonObjects(t *testing.T) {
	for _, body := range []string{"", "[]", "1", `"s"`, "{", "null"} {
		var errs Errors
		if Object(json.RawMessage(body), "", map[string]any{}, &errs) != nil || len(errs) != 1 || errs[0].Field != "body" {
			t.Errorf("%q: %v", body, errs)
		}
	}
	if (Errors{}).Err() != nil {
		t.Fatal("empty errors must be a nil error")
	}
}

func FuzzObject(f *testing.F) {
	f.Add([]byte(`{"a":"x","b":2,"c":[1]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var a string
		var b int64
		var errs Errors
		present := Object(body, "p", map[string]any{"a": &a, "b": &b}, &errs)
		for _, e := range errs {
			if e.Field != "p" && !strings.HasPrefix(e.Field, "p.") {
				t.Fatalf("error outside the path: %+v", e)
			}
		}
		if present == nil && len(errs) == 0 {
			t.Fatal("no object and no error")
		}
	})
}

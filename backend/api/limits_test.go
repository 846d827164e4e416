package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/harness/redistest"
)

// Rule writes past a configured limit get 400 in the API's one error shape,
// the field and the limit named.
func TestRuleLimitsAre400NamingTheLimit(t *testing.T) {
	rdb := redistest.Start(t).Client()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	o := storeOptions(rdb, func() time.Time { return t0 }, log)
	o.Rules = rules.NewStore(rdb, rules.Options{Limits: rules.Limits{
		MaxRules: 2, MaxRuleKeywords: 2, MaxPublishedKeywords: 3, MaxKeywordBytes: 10}}, nil, log)
	o.Tokens = []string{"tok-a"}
	h, err := NewRouter(o)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(checked(t, h))
	t.Cleanup(ts.Close)
	post := func(name string, keywords ...string) (int, Error) {
		var m map[string]any
		json.Unmarshal([]byte(ruleBody), &m)
		m["name"], m["keywords"] = name, keywords
		b, _ := json.Marshal(m)
		req, _ := http.NewRequest("POST", ts.URL+"/api/v1/rules", strings.NewReader(string(b)))
		req.Header.Set("Authorization", "Bearer tok-a")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e Error
		body, _ := io.ReadAll(resp.Body)
		json.Unmarshal(body, &e)
		return resp.StatusCode, e
	}
	tests := []struct {
		name     string
		keywords []string
		status   int
		field    string
		message  string // substring
	}{
		{"keywords per rule", []string{"a", "b", "c"}, 400, "keywords", "3 keywords, over the limit of 2 (KEYALERT_MAX_RULE_KEYWORDS)"},
		{"keyword length", []string{"0123456789x"}, 400, "keywords[0]", "11 bytes, over the limit of 10 (KEYALERT_MAX_KEYWORD_BYTES)"},
		{"first rule", []string{"a", "b"}, 201, "", ""},
		{"published keywords", []string{"c", "d"}, 400, "keywords", "would publish 4 distinct keywords, over the limit of 3 (KEYALERT_MAX_PUBLISHED_KEYWORDS)"},
		{"second rule", []string{"a", "c"}, 201, "", ""},
		{"number of rules", []string{"a"}, 400, "rules", "2 rules stored, the limit is 2 (KEYALERT_MAX_RULES)"},
	}
	for _, tt := range tests {
		status, e := post(tt.name, tt.keywords...)
		if status != tt.status {
			t.Fatalf("%s: status %d (%+v), want %d", tt.name, status, e, tt.status)
		}
		if tt.field == "" {
			continue
		}
		if len(e.Fields) != 1 || e.Fields[0].Field != tt.field || !strings.Contains(e.Fields[0].Message, tt.message) ||
			!strings.HasPrefix(e.Error, "invalid rule: "+tt.field+": ") {
			t.Errorf("%s: error %+v, want field %s with %q", tt.name, e, tt.field, tt.message)
		}
	}
}

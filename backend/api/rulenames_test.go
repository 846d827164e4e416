package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/keyalert/keyalert/backend/rules"
)

func TestRuleNamesAreUnique(t *testing.T) {
	f := newAlertFixture(t, nil)
	status, body := f.do("POST", "/rules", ruleBody)
	if status != http.StatusCreated {
		t.Fatalf("create: %d %s", status, body)
	}
	first := decode[rules.Rule](t, body)
	other := strings.Replace(ruleBody, `"java exceptions"`, `"other"`, 1)
	status, body = f.do("POST", "/rules", other)
	if status != http.StatusCreated {
		t.Fatalf("create other: %d %s", status, body)
	}
	second := decode[rules.Rule](t, body)
	renamed := strings.Replace(ruleBody, `"count":5`, `"count":7`, 1)

	tests := []struct {
		name, method, path, body string
		status                   int
	}{
		{"a second rule of the name is refused", "POST", "/rules", ruleBody, http.StatusConflict},
		{"renaming a rule to a taken name is refused", "PUT", "/rules/" + second.ID, ruleBody, http.StatusConflict},
		{"PUT of the rule itself keeps its name", "PUT", "/rules/" + first.ID, renamed, http.StatusOK},
		{"?replace=true replaces the rule of that name", "POST", "/rules?replace=true", renamed, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := f.do(tt.method, tt.path, tt.body)
			if status != tt.status {
				t.Fatalf("%s %s: %d %s, want %d", tt.method, tt.path, status, body, tt.status)
			}
			if status == http.StatusConflict {
				e := decode[Error](t, body)
				if len(e.Fields) != 1 || e.Fields[0].Field != "name" || !strings.Contains(e.Error, first.ID) {
					t.Errorf("409 body %s: want the field name and the id of the rule that has it", body)
				}
				return
			}
			if got := decode[rules.Rule](t, body); got.ID != first.ID || got.Condition.Count != 7 {
				t.Errorf("answer %s: want rule %s with count 7", body, first.ID)
			}
		})
	}
	status, body = f.do("GET", "/rules", "")
	if n := strings.Count(body, `"java exceptions"`); status != http.StatusOK || n != 1 {
		t.Errorf("rules after the conflicts: %d, %d called java exceptions, want 1", status, n)
	}
}

package rules

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/keyalert/keyalert/backend/validate"
	"github.com/keyalert/keyalert/harness/redistest"
)

func TestDecodeEnforcesKeywordLimits(t *testing.T) {
	lim := Limits{MaxRuleKeywords: 3, MaxKeywordBytes: 8}
	tests := []struct {
		name     string
		keywords []string
		limits   Limits
		field    string // "" accepts
		message  string
	}{
		{"at the per-rule limit", []string{"a", "b", "c"}, lim, "", ""},
		{"over the per-rule limit", []string{"a", "b", "c", "d"}, lim, "keywords", "4 keywords, over the limit of 3 (KEYALERT_MAX_RULE_KEYWORDS)"},
		{"at the length limit", []string{"12345678"}, lim, "", ""},
		{"over the length limit", []string{"ok", "123456789"}, lim, "keywords[1]", "9 bytes, over the limit of 8 (KEYALERT_MAX_KEYWORD_BYTES)"},
		{"zero limits take the defaults", []string{strings.Repeat("k", DefaultMaxKeywordBytes)}, Limits{}, "", ""},
		{"default per-rule limit", manyKeywords(DefaultMaxRuleKeywords + 1), Limits{}, "keywords",
			fmt.Sprintf("%d keywords, over the limit of %d (KEYALERT_MAX_RULE_KEYWORDS)", DefaultMaxRuleKeywords+1, DefaultMaxRuleKeywords)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validBody()
			m["keywords"] = tt.keywords
			_, errs := Decode(encode(t, m), DecodeOptions{Limits: tt.limits})
			if tt.field == "" {
				if errs.Err() != nil {
					t.Fatalf("refused: %v", errs)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != tt.field || errs[0].Message != tt.message {
				t.Fatalf("errors %v, want %s: %s", errs, tt.field, tt.message)
			}
		})
	}
}

func manyKeywords(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("kw%d", i)
	}
	return out
}

// The store enforces the limits that span rules atomically with the write
// and reports them as validate.Errors naming the limit.
func TestStoreEnforcesFleetLimits(t *testing.T) {
	ctx := context.Background()
	type step struct {
		op       string // "create", "update <n>" (n-th created rule), "disable <n>"
		keywords []string
		field    string // "" succeeds
		message  string
	}
	tests := []struct {
		name   string
		limits Limits
		steps  []step
	}{
		{"rule count", Limits{MaxRules: 2}, []step{
			{"create", []string{"a"}, "", ""},
			{"create", []string{"a"}, "", ""},
			{"create", []string{"a"}, "rules", "2 rules stored, the limit is 2 (KEYALERT_MAX_RULES): delete rules or raise it"},
		}},
		{"shared keywords count once", Limits{MaxPublishedKeywords: 2}, []step{
			{"create", []string{"a", "b"}, "", ""},
			{"create", []string{"b", "a"}, "", ""},
			{"create", []string{"a", "c"}, "keywords", "enabled rules would publish 3 distinct keywords, over the limit of 2 (KEYALERT_MAX_PUBLISHED_KEYWORDS) that every agent follows"},
		}},
		{"update replacing its own keywords stays within", Limits{MaxPublishedKeywords: 2}, []step{
			{"create", []string{"a", "b"}, "", ""},
			{"update 0", []string{"c", "d"}, "", ""},
			{"update 0", []string{"c", "d", "e"}, "keywords", "enabled rules would publish 3 distinct keywords, over the limit of 2 (KEYALERT_MAX_PUBLISHED_KEYWORDS) that every agent follows"},
		}},
		{"disabled rules publish nothing", Limits{MaxPublishedKeywords: 1}, []step{
			{"create", []string{"a"}, "", ""},
			{"disable 0", []string{"b", "c"}, "", ""},
			{"create", []string{"b"}, "", ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewStore(redistest.Start(t).Client(), Options{Limits: tt.limits}, nil, nil)
			var created []Rule
			for i, st := range tt.steps {
				r := testRule(t, fmt.Sprintf("r%d", i), st.keywords...)
				var err error
				switch op, n, _ := strings.Cut(st.op, " "); op {
				case "create":
					var c Rule
					if c, err = s.Create(ctx, r); err == nil {
						created = append(created, c)
					}
				case "update", "disable":
					r.Enabled = op != "disable"
					idx := int(n[0] - '0')
					_, err = s.Update(ctx, created[idx].ID, r)
				}
				if st.field == "" {
					if err != nil {
						t.Fatalf("step %d (%s %v): %v", i, st.op, st.keywords, err)
					}
					continue
				}
				var errs validate.Errors
				if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Field != st.field || errs[0].Message != st.message {
					t.Fatalf("step %d (%s %v): err %v, want %s: %s", i, st.op, st.keywords, err, st.field, st.message)
				}
			}
		})
	}
}

func TestDecodeRefusesRegexWithoutRequiredLiteral(t *testing.T) {
	tests := []struct {
		name      string
		keyword   string
		ignore    bool
		optIn     bool
		wantField string // "" accepts
	}{
		{"literal alternation", "ERROR|FATAL", false, false, ""},
		{"gated on a word", `disk\s+full`, false, false, ""},
		{"ignore case keeps the literal", "time ?out", true, false, ""},
		{"classes only (the issue's slow regex)", "[a-z ]{60}[0-9]{20}", false, false, "keywords[0]"},
		{"digits only gate too short", `5\d\d`, false, false, "keywords[0]"},
		{"dot star", ".*", false, false, "keywords[0]"},
		{"opted in", "[a-z ]{60}[0-9]{20}", false, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validBody()
			m["match"] = "regex"
			m["keywords"] = []string{tt.keyword}
			m["ignore_case"] = tt.ignore
			if tt.optIn {
				m["accept_slow_regex"] = true
			}
			r, errs := Decode(encode(t, m), DecodeOptions{})
			if tt.wantField == "" {
				if errs.Err() != nil {
					t.Fatalf("refused: %v", errs)
				}
				if r.AcceptSlowRegex != tt.optIn {
					t.Fatalf("AcceptSlowRegex = %v", r.AcceptSlowRegex)
				}
				return
			}
			if len(errs) != 1 || errs[0].Field != tt.wantField || !strings.Contains(errs[0].Message, "accept_slow_regex") ||
				!strings.Contains(errs[0].Message, fmt.Sprintf("at least %d bytes", MinRegexLiteral)) {
				t.Fatalf("errors %v, want %s naming the limit and the opt-in", errs, tt.wantField)
			}
		})
	}
}

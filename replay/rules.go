package replay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/backend/validate"
)

// loadRules reads and validates the rules file; every bad rule is reported
// with its index and fields.
func loadRules(path string) ([]rules.Rule, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, badInput("rules file: %v", err)
	}
	return parseRules(path, b)
}

// parseRules validates the rules file's contents b; path only names the
// file in errors.
func parseRules(path string, b []byte) ([]rules.Rule, error) {
	items, err := splitRulesDoc(b)
	if err != nil {
		return nil, badInput("%s: %v", path, err)
	}
	if len(items) == 0 {
		return nil, badInput("%s: no rules in the file", path)
	}
	var problems []string
	out := make([]rules.Rule, 0, len(items))
	for i, raw := range items {
		r, errs := decodeRule(raw)
		if len(errs) > 0 {
			name := ""
			if r.Name != "" {
				name = fmt.Sprintf(" %q", r.Name)
			}
			for _, fe := range errs {
				problems = append(problems, fmt.Sprintf("%s: rules[%d]%s: %s: %s", path, i, name, fe.Field, fe.Message))
			}
			continue
		}
		out = append(out, r)
	}
	if len(problems) > 0 {
		return nil, badInput("%s", strings.Join(problems, "\n"))
	}
	return out, nil
}

// decodeRule validates one rule as POST /api/v1/rules does, except that the
// routing key is optional and may be the redacted form an export of the live
// rules carries: a replay never pages.
func decodeRule(raw json.RawMessage) (rules.Rule, validate.Errors) {
	r, errs := rules.Decode(raw, rules.DecodeOptions{DefaultRoutingKey: true})
	var probe struct {
		ID        string `json:"id"`
		PagerDuty struct {
			RoutingKey string `json:"routing_key"`
		} `json:"pagerduty"`
	}
	_ = json.Unmarshal(raw, &probe) // fields of the wrong type are already in errs
	if strings.HasPrefix(probe.PagerDuty.RoutingKey, "*") {
		errs = slices.DeleteFunc(errs, func(fe validate.FieldError) bool { return fe.Field == "pagerduty.routing_key" })
	}
	r.ID = probe.ID
	r.PagerDuty = rules.PagerDuty{} // never needed, never kept
	return r, errs
}

// splitRulesDoc accepts a JSON array of rules, the {"rules": [...]} answer of
// GET /api/v1/rules, or a single rule object.
func splitRulesDoc(b []byte) ([]json.RawMessage, error) {
	const want = `want a JSON array of rules, {"rules": [...]} or one rule object`
	trim := bytes.TrimSpace(b)
	if len(trim) == 0 {
		return nil, errors.New("empty file; " + want)
	}
	var items []json.RawMessage
	switch trim[0] {
	case '[':
		if err := json.Unmarshal(b, &items); err != nil {
			return nil, jsonError(b, err)
		}
		return items, nil
	case '{':
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, jsonError(b, err)
		}
		list, ok := doc["rules"]
		if !ok {
			return []json.RawMessage{json.RawMessage(trim)}, nil
		}
		if err := json.Unmarshal(list, &items); err != nil {
			return nil, fmt.Errorf(`"rules": want an array of rule objects`)
		}
		return items, nil
	}
	return nil, errors.New(want)
}

// jsonError places a JSON syntax or type error at its line and column.
func jsonError(b []byte, err error) error {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	if off < 0 || off > int64(len(b)) {
		return fmt.Errorf("invalid JSON: %v", err)
	}
	line := 1 + bytes.Count(b[:off], []byte("\n"))
	col := int(off) - bytes.LastIndexByte(b[:off], '\n')
	return fmt.Errorf("line %d, column %d: invalid JSON: %v", line, col, err)
}

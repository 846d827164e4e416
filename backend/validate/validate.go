// Package validate collects per-field problems in a JSON request body, so an
// API answers one 400 listing every bad field instead of stopping at the first.
package validate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// FieldError is one bad field, named by its JSON path ("condition.window",
// "keywords[2]").
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Errors is a list of field problems; it is an error when non-empty.
type Errors []FieldError

// Add records a problem with field.
func (e *Errors) Add(field, format string, args ...any) {
	*e = append(*e, FieldError{Field: field, Message: fmt.Sprintf(format, args...)})
}

// Has reports whether field already has a problem, so dependent checks can be
// skipped instead of piling up noise.
func (e Errors) Has(field string) bool {
	for _, f := range e {
		if f.Field == field {
			return true
		}
	}
	return false
}

// Err returns e as an error, or nil when there is no problem.
func (e Errors) Err() error {
	if len(e) == 0 {
		return nil
	}
	return e
}

func (e Errors) Error() string {
	parts := make([]string, len(e))
	for i, f := range e {
		parts[i] = f.Field + ": " + f.Message
	}
	return "invalid fields: " + strings.Join(parts, "; ")
}

// Join prefixes a child field name with its parent path.
func Join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// Object decodes the JSON object raw into the pointers of fields, keyed by
// JSON name. Each unknown key, each value of the wrong type and a body that is
// not an object is recorded in errs under its path; the other fields are still
// decoded. A JSON null leaves the target untouched, as if the key were absent.
// It returns the keys that were present with a non-null value.
func Object(raw json.RawMessage, path string, fields map[string]any, errs *Errors) map[string]bool {
	name := path
	if name == "" {
		name = "body"
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		errs.Add(name, "want a JSON object")
		return nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		errs.Add(name, "invalid JSON: %s", trimJSONErr(err))
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // stable error order
	present := make(map[string]bool, len(m))
	for _, k := range keys {
		v := m[k]
		target, ok := fields[k]
		if !ok {
			errs.Add(Join(path, k), "unknown field")
			continue
		}
		if bytes.Equal(bytes.TrimSpace(v), []byte("null")) {
			continue
		}
		if err := json.Unmarshal(v, target); err != nil {
			errs.Add(Join(path, k), "want %s", typeName(target))
			continue
		}
		present[k] = true
	}
	return present
}

func typeName(target any) string {
	switch target.(type) {
	case *string:
		return "a string"
	case *bool:
		return "true or false"
	case *int64, *int:
		return "an integer"
	case *float64:
		return "a number"
	case *[]string:
		return "an array of strings"
	case *json.RawMessage:
		return "a JSON value"
	default:
		return fmt.Sprintf("a value of type %T", target)
	}
}

func trimJSONErr(err error) string {
	return strings.TrimPrefix(err.Error(), "json: ")
}

// Package rulesfile reads and writes rules files, the source of
// `keyalert rules apply` and the output of `keyalert rules export`: YAML or
// JSON, either a list of rules or {"rules": [...]}, each rule the API's rule
// document. Silences files (`keyalert silences apply`) are read the same
// way, under {"silences": [...]}. It keeps each rule's position so an error names the file, the
// line, the rule and the field.
//
// Routing keys are never written in clear: export writes a reference
// "${KEYALERT_ROUTING_KEY_<last 4 characters>}", and a routing_key of the
// form "${NAME}" is read from the environment variable NAME when applied.
package rulesfile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// MaxRules bounds the rules of one file (keyalertd's own default limit is
// lower; this only stops a runaway file early).
const MaxRules = 100_000

// Item is one rule of a file.
type Item struct {
	Index int    // position in the list, from 0
	Line  int    // line of the rule's first key
	Name  string // its name, "" when missing
	ID    string // its explicit id, "" when matched by name
	// Doc is the rule as JSON, a routing key reference left as written.
	Doc json.RawMessage
	// RoutingKeyRef is the variable a "${NAME}" routing key names, "" when
	// the key is written in clear or absent.
	RoutingKeyRef string
	node          *yaml.Node
	noun          string // "rule" or "silence", for messages
}

// Label names the item in messages: `rule "name"` or `rule #3`.
func (it *Item) Label() string {
	if it.Name != "" {
		return fmt.Sprintf("%s %q", it.noun, it.Name)
	}
	return fmt.Sprintf("%s #%d", it.noun, it.Index+1)
}

// Error is a problem at a place in a file.
type Error struct {
	Path  string
	Line  int
	Rule  string // Item.Label, "" for the file as a whole
	Field string
	Msg   string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Rule != "" {
		b.WriteString(e.Rule + ": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errorf is an Error at the item's field (its line when the file has it).
func (it *Item) Errorf(path, field, format string, args ...any) *Error {
	return &Error{Path: path, Line: it.LineOf(field), Rule: it.Label(), Field: field, Msg: fmt.Sprintf(format, args...)}
}

var refRE = regexp.MustCompile(`^\$\{([A-Za-z_][A-Za-z0-9_]*)\}$`)

// Ref returns the variable a "${NAME}" value names.
func Ref(v string) (string, bool) {
	m := refRE.FindStringSubmatch(v)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// Parse reads a rules file's content; path is for messages.
func Parse(path string, data []byte) ([]*Item, error) { return ParseList(path, data, "rules", "rule") }

// ParseList reads a file of a list of documents, or {key: [...]}; noun
// names one in messages.
func ParseList(path string, data []byte, key, noun string) ([]*Item, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, &Error{Path: path, Line: yamlLine(err), Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, &Error{Path: path, Msg: fmt.Sprintf("empty: want a list of %s, or {%s: [...]}", key, key)}
	}
	list := doc.Content[0]
	if list.Kind == yaml.MappingNode {
		var found *yaml.Node
		for i := 0; i+1 < len(list.Content); i += 2 {
			if k := list.Content[i]; k.Value == key {
				found = list.Content[i+1]
			} else {
				return nil, &Error{Path: path, Line: k.Line, Field: k.Value, Msg: fmt.Sprintf("unknown key: the file holds a list of %s, or {%s: [...]}", key, key)}
			}
		}
		if found == nil {
			return nil, &Error{Path: path, Line: list.Line, Msg: fmt.Sprintf("want a list of %s, or {%s: [...]}", key, key)}
		}
		list = found
	}
	if list.Kind != yaml.SequenceNode {
		if list.Kind == yaml.ScalarNode && list.Tag == "!!null" {
			return nil, nil // "rules:" with nothing: no rules
		}
		return nil, &Error{Path: path, Line: list.Line, Msg: "want a list of " + key}
	}
	if len(list.Content) > MaxRules {
		return nil, &Error{Path: path, Line: list.Line, Msg: fmt.Sprintf("%d %s, over the limit of %d", len(list.Content), key, MaxRules)}
	}
	items := make([]*Item, 0, len(list.Content))
	for i, n := range list.Content {
		it := &Item{Index: i, Line: n.Line, node: n, noun: noun}
		if n.Kind != yaml.MappingNode {
			return nil, it.Errorf(path, "", "want a %s (a mapping of its fields)", noun)
		}
		var v any
		if err := n.Decode(&v); err != nil {
			return nil, it.Errorf(path, "", "%v", err)
		}
		m, _ := v.(map[string]any)
		it.Name, _ = m["name"].(string)
		if id, ok := m["id"]; ok {
			s, isStr := id.(string)
			if !isStr || s == "" {
				return nil, it.Errorf(path, "id", "want the rule id as a string")
			}
			it.ID = s
		}
		if pd, ok := m["pagerduty"].(map[string]any); ok {
			if k, ok := pd["routing_key"].(string); ok {
				it.RoutingKeyRef, _ = Ref(k)
			}
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return nil, it.Errorf(path, "", "not representable as JSON: %v", err)
		}
		it.Doc = raw
		items = append(items, it)
	}
	return items, nil
}

// yamlLine is the line a yaml.v3 error names ("yaml: line 7: ...").
func yamlLine(err error) int {
	s := err.Error()
	if i := strings.Index(s, "line "); i >= 0 {
		j := i + 5
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		n, _ := strconv.Atoi(s[i+5 : j])
		return n
	}
	return 0
}

// LineOf is the line of a field path ("condition.window", "keywords[2]")
// in the item, or of the nearest part of it present; the rule's line when
// the field is absent.
func (it *Item) LineOf(field string) int {
	n := it.node
	line := it.Line
	if n == nil || field == "" {
		return line
	}
	for _, part := range strings.Split(field, ".") {
		key, idx := part, -1
		if i := strings.IndexByte(part, '['); i >= 0 && strings.HasSuffix(part, "]") {
			key = part[:i]
			idx, _ = strconv.Atoi(part[i+1 : len(part)-1])
		}
		if n.Kind != yaml.MappingNode {
			return line
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				line, next = n.Content[i].Line, n.Content[i+1]
			}
		}
		if next == nil {
			return line
		}
		n = next
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return line
			}
			n = n.Content[idx]
			line = n.Line
		}
	}
	return line
}

// Read reads and parses the file at path ("-": stdin).
func Read(path string) ([]*Item, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = readAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// ReadList reads and parses the file at path ("-": stdin) as ParseList.
func ReadList(path, key, noun string) ([]*Item, error) {
	var data []byte
	var err error
	if path == "-" {
		data, err = readAll(os.Stdin)
	} else {
		data, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, err
	}
	return ParseList(path, data, key, noun)
}

func readAll(f *os.File) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(f)
	return b.Bytes(), err
}

// ExportRef is the reference export writes for a redacted routing key:
// its last four characters tell keys apart.
func ExportRef(redacted string) string {
	tail := redacted
	if len(tail) > 4 {
		tail = tail[len(tail)-4:]
	}
	tail = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, tail)
	return "${KEYALERT_ROUTING_KEY_" + tail + "}"
}

// fieldOrder is the order export writes a rule's keys in: what it is, what
// it counts, when it fires, where it pages; the rest after.
var fieldOrder = []string{"id", "name", "keywords", "match", "ignore_case", "accept_slow_regex", "condition", "group_by",
	"filters", "for", "eval_delay", "forget_after", "mute_time_intervals", "severity", "pagerduty", "repeat_interval",
	"resolve_after", "runbook_url", "enabled"}

// Export writes rules (the API's rule documents) as YAML, or JSON when
// asJSON, without the server's bookkeeping (created_at, updated_at; id
// unless withIDs) and with routing keys as references.
func Export(docs []json.RawMessage, withIDs, asJSON bool, header string) ([]byte, error) {
	var rulesOut []map[string]any
	for _, d := range docs {
		var m map[string]any
		if err := json.Unmarshal(d, &m); err != nil {
			return nil, fmt.Errorf("decode rule: %w", err)
		}
		delete(m, "created_at")
		delete(m, "updated_at")
		if !withIDs {
			delete(m, "id")
		}
		if pd, ok := m["pagerduty"].(map[string]any); ok {
			if k, ok := pd["routing_key"].(string); ok && k != "" {
				pd["routing_key"] = ExportRef(k)
			}
		}
		rulesOut = append(rulesOut, m)
	}
	return write("rules", rulesOut, fieldOrder, asJSON, header)
}

// write encodes docs under key as JSON, or as YAML with each document's
// keys in order (the rest sorted after) and header as a comment.
func write(key string, docs []map[string]any, order []string, asJSON bool, header string) ([]byte, error) {
	if asJSON {
		if docs == nil {
			docs = []map[string]any{}
		}
		b, err := json.MarshalIndent(map[string]any{key: docs}, "", "  ")
		return append(b, '\n'), err
	}
	seq := &yaml.Node{Kind: yaml.SequenceNode}
	for _, m := range docs {
		mn := &yaml.Node{Kind: yaml.MappingNode}
		add := func(k string) error {
			v, ok := m[k]
			if !ok {
				return nil
			}
			delete(m, k)
			var vn yaml.Node
			if err := vn.Encode(v); err != nil {
				return err
			}
			mn.Content = append(mn.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: k}, &vn)
			return nil
		}
		for _, k := range order {
			if err := add(k); err != nil {
				return nil, err
			}
		}
		for k := range sortedKeys(m) {
			if err := add(k); err != nil {
				return nil, err
			}
		}
		seq.Content = append(seq.Content, mn)
	}
	root := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{{Kind: yaml.ScalarNode, Value: key}, seq}}
	if len(seq.Content) == 0 {
		seq.Style = yaml.FlowStyle
	}
	root.HeadComment = header
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, err
	}
	return b.Bytes(), enc.Close()
}

// silenceOrder is the order export writes a silence's keys in.
var silenceOrder = []string{"id", "rule_id", "host", "tag", "keyword", "time_intervals", "start", "end", "author", "comment"}

// ExportSilences writes silences (the API's documents) as YAML, or JSON
// when asJSON, without the server's bookkeeping (created_at, active; id
// unless withIDs).
func ExportSilences(docs []json.RawMessage, withIDs, asJSON bool, header string) ([]byte, error) {
	var out []map[string]any
	for _, d := range docs {
		var m map[string]any
		if err := json.Unmarshal(d, &m); err != nil {
			return nil, fmt.Errorf("decode silence: %w", err)
		}
		delete(m, "created_at")
		delete(m, "active")
		if !withIDs {
			delete(m, "id")
		}
		out = append(out, m)
	}
	return write("silences", out, silenceOrder, asJSON, header)
}

// ExportIntervals writes time intervals (the API's documents) as YAML, or
// JSON when asJSON, without created_at and updated_at.
func ExportIntervals(docs []json.RawMessage, asJSON bool, header string) ([]byte, error) {
	var out []map[string]any
	for _, d := range docs {
		var m map[string]any
		if err := json.Unmarshal(d, &m); err != nil {
			return nil, fmt.Errorf("decode time interval: %w", err)
		}
		delete(m, "created_at")
		delete(m, "updated_at")
		out = append(out, m)
	}
	return write("intervals", out, []string{"name", "time_intervals"}, asJSON, header)
}

func sortedKeys(m map[string]any) func(func(string) bool) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return func(yield func(string) bool) {
		for _, k := range keys {
			if !yield(k) {
				return
			}
		}
	}
}

// ReceiverSecretFields are the receiver fields that hold credentials:
// export writes them as "${…}" references, apply reads those from the
// environment.
var ReceiverSecretFields = []string{"routing_key", "url", "secret"}

// ReceiverRef is the variable export names for a receiver's secret field:
// KEYALERT_RECEIVER_<NAME>_<FIELD>, the name upper-cased with every other
// character than letters and digits as '_'.
func ReceiverRef(name, field string) string {
	var b strings.Builder
	b.WriteString("KEYALERT_RECEIVER_")
	for _, r := range strings.ToUpper(name) {
		if r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	b.WriteString("_" + strings.ToUpper(field))
	return b.String()
}

// ExportReceivers writes receivers (the API's documents, secrets redacted)
// as YAML, or JSON when asJSON, every secret as a ReceiverRef reference and
// without created_at and updated_at. An Alertmanager URL is written as
// such unless it carries a password.
func ExportReceivers(docs []json.RawMessage, asJSON bool, header string) ([]byte, error) {
	var out []map[string]any
	for _, d := range docs {
		var m map[string]any
		if err := json.Unmarshal(d, &m); err != nil {
			return nil, fmt.Errorf("decode receiver: %w", err)
		}
		delete(m, "created_at")
		delete(m, "updated_at")
		name, _ := m["name"].(string)
		for _, f := range ReceiverSecretFields {
			v, ok := m[f].(string)
			if !ok || v == "" {
				continue
			}
			if f == "url" && m["type"] == "alertmanager" && !strings.Contains(v, "xxxxx@") {
				continue // no password: the URL is not a secret
			}
			m[f] = "${" + ReceiverRef(name, f) + "}"
		}
		out = append(out, m)
	}
	return write("receivers", out, []string{"name", "type", "routing_key", "url", "secret", "severities", "template"}, asJSON, header)
}

package config

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/keyalert/keyalert/plugin/accessor"
)

// ParseLabelKeys reads Label_Keys: comma-separated `name=$accessor` or
// `$accessor` items (`\,` is a literal comma, as in every list key). Each
// bad item is its own error, quoting it.
func ParseLabelKeys(s string) ([]LabelKey, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []LabelKey
	var errs []error
	seen := map[string]bool{}
	for i, it := range SplitList(s) {
		if it == "" {
			errs = append(errs, fmt.Errorf("item %d of %q is empty", i+1, s))
			continue
		}
		l, err := parseLabelKey(it)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[l.Name] {
			errs = append(errs, fmt.Errorf("%q: label name %q is used twice (name one of them: other=%s)", it, l.Name, l.Path))
			continue
		}
		seen[l.Name] = true
		out = append(out, l)
	}
	if len(errs) == 0 && len(out) > stream.MaxLabels {
		errs = append(errs, fmt.Errorf("%q: %d labels, at most %d", s, len(out), stream.MaxLabels))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return out, nil
}

// parseLabelKey reads one item. An item starting with $ is a bare accessor
// (its brackets may hold '='); otherwise a '=' separates the name from the
// accessor, and an item without one is a bare top-level key.
func parseLabelKey(it string) (LabelKey, error) {
	name, path, named := "", it, false
	if !strings.HasPrefix(it, "$") {
		if n, p, ok := strings.Cut(it, "="); ok {
			name, path, named = strings.TrimSpace(n), strings.TrimSpace(p), true
		}
	}
	acc, err := accessor.Parse(path)
	if err != nil {
		return LabelKey{}, fmt.Errorf("%q: %w", it, err)
	}
	if !named {
		name = DerivedLabelName(acc.Name())
	}
	if err := stream.ValidLabelName(name); err != nil {
		if named {
			return LabelKey{}, fmt.Errorf("%q: %w", it, err)
		}
		return LabelKey{}, fmt.Errorf("%q: %w (derived from the accessor's last key; name it: name=%s)", it, err, path)
	}
	return LabelKey{Name: name, Path: acc}, nil
}

// DerivedLabelName is the name of a label given as a bare accessor: its last
// key with every character other than a letter, digit or '_' replaced by
// '_' (`app.kubernetes.io/name` → `app_kubernetes_io_name`).
func DerivedLabelName(key string) string {
	b := []byte(key)
	for i, c := range b {
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// parseTagRegex compiles Tag_Regex and checks its named groups as label
// names, also against the labels of Label_Keys.
func parseTagRegex(v string, keys []LabelKey) (*regexp.Regexp, error) {
	if v == "" {
		return nil, nil
	}
	re, err := regexp.Compile(v)
	if err != nil {
		return nil, fmt.Errorf("%q does not compile: %v", v, err)
	}
	names := TagRegexNames(re)
	if len(names) == 0 {
		return nil, fmt.Errorf("%q has no named group; write each label as (?P<name>…)", v)
	}
	seen := map[string]bool{}
	for _, k := range keys {
		seen[k.Name] = true
	}
	var errs []error
	for _, n := range names {
		if err := stream.ValidLabelName(n); err != nil {
			errs = append(errs, fmt.Errorf("%q: group %w", v, err))
			continue
		}
		if seen[n] {
			errs = append(errs, fmt.Errorf("%q: group %q names a label twice (in %s or in this regex)", v, n, KeyLabelKeys))
			continue
		}
		seen[n] = true
	}
	if len(errs) == 0 && len(keys)+len(names) > stream.MaxLabels {
		errs = append(errs, fmt.Errorf("%q: its %d groups and the %d labels of %s make %d labels, at most %d",
			v, len(names), len(keys), KeyLabelKeys, len(keys)+len(names), stream.MaxLabels))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return re, nil
}

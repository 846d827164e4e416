package config

import (
	"slices"
	"strings"
)

// Fluent Bit before v5.1.1 cannot tell a plugin which keys an [OUTPUT]
// section sets (FLBPluginConfigKey only looks one up), so a misspelled key
// would be ignored in silence: `Keyword Exception` leaves the plugin without
// keywords. Misspelled finds such keys by looking up every spelling one edit
// away from a keyalert key; Parse refuses to start when one is set. From
// v5.1.1 Fluent Bit itself rejects any unknown key through the config map the
// plugin registers (see ConfigMap), so this is the net for older versions.

// CoreKeys are the keys Fluent Bit's core consumes for an output instance;
// they never reach the plugin. CorePrefixes are the prefixes of core key
// families.
var (
	CoreKeys = []string{
		"alias", "host", "ipv6", "listen", "log_level", "log_suppress_interval",
		"match", "match_regex", "mem_buf_limit", "name", "port", "retry_limit",
		"routable", "tag", "threaded", "tls", "workers",
	}
	CorePrefixes = []string{"storage.", "tls.", "net."}
)

// Misspelling is a key set in the configuration that is not a keyalert key
// but one edit (a letter left out, added, changed or two swapped) away from
// one.
type Misspelling struct {
	Key  string // as looked up; Fluent Bit matches keys in any case
	Want string // the keyalert key it is probably meant to be
}

// spellingAlphabet is what an insertion or substitution may use: keys are
// letters, digits and underscores, and users reach for '-' and '.'.
const spellingAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789_-."

// Misspelled looks up every near miss of every keyalert key and returns the
// ones the configuration sets. It costs about 1,500 lookups per key (some
// milliseconds, once per instance start).
func Misspelled(get Getter) []Misspelling {
	known := map[string]bool{}
	for _, s := range settings {
		known[strings.ToLower(s.Key)] = true
	}
	for _, k := range CoreKeys {
		known[k] = true
	}
	var out []Misspelling
	tried := map[string]bool{}
	for _, s := range settings {
		for _, v := range nearMisses(s.Key) {
			lv := strings.ToLower(v)
			if known[lv] || tried[lv] || isCorePrefixed(lv) {
				continue
			}
			tried[lv] = true
			if get(v) != "" {
				out = append(out, Misspelling{Key: v, Want: s.Key})
			}
		}
	}
	slices.SortFunc(out, func(a, b Misspelling) int { return strings.Compare(a.Key, b.Key) })
	return out
}

func isCorePrefixed(k string) bool {
	for _, p := range CorePrefixes {
		if strings.HasPrefix(k, p) {
			return true
		}
	}
	return false
}

// nearMisses lists the spellings one edit away from key, keeping key's case
// where its letters are kept.
func nearMisses(key string) []string {
	var out []string
	for i := range len(key) {
		out = append(out, key[:i]+key[i+1:]) // deletion
		if i+1 < len(key) && key[i] != key[i+1] {
			out = append(out, key[:i]+string(key[i+1])+string(key[i])+key[i+2:]) // transposition
		}
		for _, c := range spellingAlphabet {
			if !strings.EqualFold(string(c), string(key[i])) {
				out = append(out, key[:i]+string(c)+key[i+1:]) // substitution
			}
		}
	}
	for i := range len(key) + 1 {
		for _, c := range spellingAlphabet {
			out = append(out, key[:i]+string(c)+key[i:]) // insertion
		}
	}
	return out
}

// KeyDoc is one key as Fluent Bit's config map describes it (`fluent-bit -o
// keyalert -h`).
type KeyDoc struct {
	Name        string
	Default     string // "" when the key has none
	Description string
}

// ConfigMap lists every key for the config map the plugin registers.
func ConfigMap() []KeyDoc {
	out := make([]KeyDoc, 0, len(settings))
	for _, s := range settings {
		out = append(out, KeyDoc{Name: s.Key, Default: s.Default, Description: plainDoc(s.Doc)})
	}
	return out
}

// plainDoc strips the README's Markdown code marks for a terminal.
func plainDoc(s string) string { return strings.ReplaceAll(s, "`", "") }

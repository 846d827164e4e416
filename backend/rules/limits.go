package rules

import "github.com/keyalert/keyalert/pkg/keyword"

// Defaults of Limits. Every agent downloads and compiles the published set,
// so these bound what one API client can make the whole fleet do.
const (
	DefaultMaxRules             = 1000
	DefaultMaxRuleKeywords      = 100
	DefaultMaxPublishedKeywords = 10000
	DefaultMaxKeywordBytes      = keyword.MaxTextLen
	MaxMaxKeywordBytes          = keyword.MaxTextLen // plugins refuse longer keywords
)

// Limits bound rules and the keyword set they publish. Zero fields take the
// defaults.
type Limits struct {
	// MaxRules is how many rules (enabled or not) may be stored; a create
	// beyond it gets 400.
	MaxRules int
	// MaxRuleKeywords bounds one rule's keywords.
	MaxRuleKeywords int
	// MaxPublishedKeywords bounds the distinct keywords of all enabled rules,
	// the set every agent follows; a write that would add keywords beyond it
	// gets 400 (one that adds none passes, even after the limit is lowered).
	MaxPublishedKeywords int
	// MaxKeywordBytes bounds one keyword's text.
	MaxKeywordBytes int
}

func (l Limits) withDefaults() Limits {
	if l.MaxRules <= 0 {
		l.MaxRules = DefaultMaxRules
	}
	if l.MaxRuleKeywords <= 0 {
		l.MaxRuleKeywords = DefaultMaxRuleKeywords
	}
	if l.MaxPublishedKeywords <= 0 {
		l.MaxPublishedKeywords = DefaultMaxPublishedKeywords
	}
	if l.MaxKeywordBytes <= 0 || l.MaxKeywordBytes > MaxMaxKeywordBytes {
		l.MaxKeywordBytes = DefaultMaxKeywordBytes
	}
	return l
}

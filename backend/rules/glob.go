package rules

// MatchGlob reports whether s matches pattern, where '*' matches any run of
// bytes (including none) and '?' exactly one byte; every other byte matches
// itself. Unlike path.Match, '/' and '.' are not special: tags and hosts are
// flat names.
func MatchGlob(pattern, s string) bool {
	// Iterative matching with one backtrack point: linear in practice and never
	// exponential, whatever the pattern.
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*': // before the literal case: '*' in s is not a wildcard
			star, mark = p, i
			p++
		case p < len(pattern) && (pattern[p] == '?' || pattern[p] == s[i]):
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}

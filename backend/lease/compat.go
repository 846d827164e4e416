package lease

// Settings is the former name of Options.
//
// Deprecated: use Options. Kept only so that callers in packages moving
// separately (backend/alert and backend/alertapi tests) compile until they
// switch; delete once nothing uses it.
type Settings = Options

// DefaultSettings returns the defaults spelled out.
//
// Deprecated: the zero Options is the default. Delete with Settings.
func DefaultSettings() Options { return Options{}.withDefaults() }

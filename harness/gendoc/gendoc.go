// Package gendoc keeps generated sections of a document (the README's
// settings tables) in step with the code that renders them: a test fails when
// the section between two markers differs, and rewrites it when asked.
package gendoc

import (
	"os"
	"strings"
	"testing"
)

// Section is one generated part of a file.
type Section struct {
	Path       string // the document, relative to the test's package
	Begin, End string // marker lines; Begin includes its newline
	Fix        string // the command that regenerates it, for the failure message
}

// Check fails t when the text between the markers is not want; with update
// it rewrites the file instead.
func (s Section) Check(t testing.TB, want string, update bool) {
	t.Helper()
	b, err := os.ReadFile(s.Path)
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i, j := strings.Index(doc, s.Begin), strings.Index(doc, s.End)
	if i < 0 || j < i {
		t.Fatalf("%s has no %q ... %q markers", s.Path, strings.TrimSpace(s.Begin), s.End)
	}
	if doc[i+len(s.Begin):j] == want {
		return
	}
	if update {
		doc = doc[:i+len(s.Begin)] + want + doc[j:]
		if err := os.WriteFile(s.Path, []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("the generated section in %s is stale; run\n  %s", s.Path, s.Fix)
}

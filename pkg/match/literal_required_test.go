package match

import (
	"testing"

	"github.com/keyalert/keyalert/pkg/keyword"
)

func TestRequiredLiteralLen(t *testing.T) {
	tests := []struct {
		name string
		spec keyword.Spec
		want int
	}{
		{"substring is its own literal", keyword.Spec{Text: "disk full"}, 9},
		{"alternation of literals runs no regex", keyword.Spec{Text: "ERROR|FATAL", Match: keyword.Regex}, 5},
		{"gate on the literal part", keyword.Spec{Text: `disk\s+full`, Match: keyword.Regex}, 4},
		{"optional letter: two literals, the shorter counts", keyword.Spec{Text: "colou?r", Match: keyword.Regex}, 5},
		{"ignore case keeps the literal", keyword.Spec{Text: "timeout", Match: keyword.Regex, IgnoreCase: true}, 7},
		{"classes only: no literal (the issue's slow regex)", keyword.Spec{Text: "[a-z ]{60}[0-9]{20}", Match: keyword.Regex}, 0},
		{"dot star: no literal", keyword.Spec{Text: ".*", Match: keyword.Regex}, 0},
		{"digit classes expand into short literals", keyword.Spec{Text: `5\d\d`, Match: keyword.Regex}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RequiredLiteralLen(tt.spec); got != tt.want {
				t.Errorf("RequiredLiteralLen(%q) = %d, want %d", tt.spec.Text, got, tt.want)
			}
		})
	}
}

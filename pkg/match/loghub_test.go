package match

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/keyalert/keyalert/pkg/keyword"
)

// loghubDir is <repo>/../shared/loghub, or "" when absent.
func loghubDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
	lh := filepath.Join(dir, "..", "shared", "loghub")
	if _, err := os.Stat(filepath.Join(lh, "README.md")); err != nil {
		return ""
	}
	return lh
}

// readLines splits a log file into lines, counting a last line without a
// newline.
func readLines(tb testing.TB, path string) [][]byte {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	lines := bytes.Split(b, []byte("\n"))
	if len(lines[len(lines)-1]) == 0 {
		lines = lines[:len(lines)-1]
	}
	return lines
}

// loghubTable parses the README's table: file -> column header -> count.
func loghubTable(t *testing.T, dir string) map[string]map[string]int {
	f, err := os.Open(filepath.Join(dir, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var header []string
	out := map[string]map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		switch {
		case header == nil:
			header = cells
		case strings.HasSuffix(cells[0], ".log"):
			row := map[string]int{}
			for i, c := range cells {
				if n, err := strconv.Atoi(c); err == nil && i < len(header) {
					row[header[i]] = n
				}
			}
			out[cells[0]] = row
		}
	}
	if len(out) == 0 {
		t.Fatal("no table rows in loghub README.md")
	}
	return out
}

func TestLoghubCountsMatchReadme(t *testing.T) {
	dir := loghubDir(t)
	if dir == "" {
		t.Skip("../shared/loghub not found next to the repository")
	}
	columns := []struct {
		header string
		spec   keyword.Spec
	}{
		{`"Exception"`, sub("Exception")},
		{`"ERROR"`, sub("ERROR")},
		{`"WARN"`, sub("WARN")},
		{`"error", any case`, subI("error")},
	}
	specs := make([]keyword.Spec, len(columns))
	for i, c := range columns {
		specs[i] = c.spec
	}
	m, err := Compile(specs)
	if err != nil {
		t.Fatal(err)
	}
	for file, want := range loghubTable(t, dir) {
		t.Run(file, func(t *testing.T) {
			lines := readLines(t, filepath.Join(dir, file))
			if n, ok := want["lines"]; ok && n != len(lines) {
				t.Errorf("%d lines, README says %d", len(lines), n)
			}
			counts := make([]int, len(columns))
			s := m.NewScratch()
			for _, l := range lines {
				m.Scan(l, s)
				for _, i := range s.Found() {
					counts[i]++
				}
				s.Reset()
			}
			for i, c := range columns {
				w, ok := want[c.header]
				if !ok {
					t.Fatalf("README has no column %s", c.header)
				}
				if counts[i] != w {
					t.Errorf("%s: %d lines, README says %d", c.header, counts[i], w)
				}
			}
		})
	}
}

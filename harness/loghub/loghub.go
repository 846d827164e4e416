// Package loghub gives tests and benchmarks the real log samples kept next to
// the checkout in ../shared/loghub (never copied into the repository). When
// they are absent the caller is skipped with a message.
package loghub

import (
	"bufio"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

// Counts is the table in ../shared/loghub/README.md: per sample file, the
// lines containing "Exception", "ERROR", "WARN" (case-sensitive) and "error"
// in any case. Tests read it; nobody writes it.
var Counts = map[string][4]int64{
	"Hadoop_2k.log":    {8, 151, 808, 156},
	"Zookeeper_2k.log": {5, 13, 1318, 305},
	"Android_2k.log":   {4, 0, 0, 0},
	"Apache_2k.log":    {0, 0, 0, 595},
	"HDFS_2k.log":      {0, 0, 80, 0},
	"OpenSSH_2k.log":   {2, 0, 0, 47},
	"HealthApp_2k.log": {0, 0, 0, 1},
}

// Dir finds <repo>/../shared/loghub by walking up from the working directory
// to the module root (the directory holding go.mod).
func Dir() (string, bool) {
	wd, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for d := wd; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			dir := filepath.Join(d, "..", "shared", "loghub")
			if st, err := os.Stat(dir); err == nil && st.IsDir() {
				return dir, true
			}
			return dir, false
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", false
		}
		d = parent
	}
}

// Files lists the sample files (*.log), sorted; it skips tb when there are none.
func Files(tb testing.TB) []string {
	tb.Helper()
	dir, ok := Dir()
	if !ok {
		tb.Skipf("loghub samples not found (want ../shared/loghub next to the repository, looked in %q)", dir)
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	if len(files) == 0 {
		tb.Skipf("no *.log files in %s", dir)
	}
	sort.Strings(files)
	return files
}

// Read returns the lines of one sample file (by base name, e.g.
// "Hadoop_2k.log"), without line ends; it skips tb when the file is absent.
func Read(tb testing.TB, name string) []string {
	tb.Helper()
	dir, ok := Dir()
	if !ok {
		tb.Skipf("loghub samples not found (want ../shared/loghub next to the repository, looked in %q)", dir)
	}
	lines, err := readLines(filepath.Join(dir, name))
	if os.IsNotExist(err) {
		tb.Skipf("loghub sample %s not found in %s", name, dir)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return lines
}

// All returns the lines of every sample file, file by file in name order.
func All(tb testing.TB) []string {
	tb.Helper()
	var all []string
	for _, f := range Files(tb) {
		lines, err := readLines(f)
		if err != nil {
			tb.Fatal(err)
		}
		all = append(all, lines...)
	}
	return all
}

func readLines(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines, sc.Err()
}

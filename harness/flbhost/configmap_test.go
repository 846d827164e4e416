package flbhost

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/plugin/config"
)

// TestMisspelledKeyStopsTheInstance: what each Fluent Bit version does with a
// key that is not keyalert's. From 5.1.1 core refuses the instance before the
// plugin's init, naming the key (the plugin registered its config map); older
// versions never show the plugin the key set, so the plugin finds near misses
// of its own keys and fails its init, naming both.
func TestMisspelledKeyStopsTheInstance(t *testing.T) {
	rs := redistest.Start(t)
	cases := []struct {
		version string
		key     string
		wantRC  int
		wantLog []string
	}{
		{"5.1.1", "Keyword", -1, []string{"unknown configuration property 'Keyword'"}},
		{"5.1.1", "Redis_URI", -1, []string{"unknown configuration property 'Redis_URI'"}},
		{"5.1.1", "Totally_Unrelated", -1, []string{"unknown configuration property 'Totally_Unrelated'"}},
		{"5.1.1", "Label_Key", -1, []string{"unknown configuration property 'Label_Key'"}},
		{"5.1.0", "Keyword", Error, []string{"Keyword: not a keyalert key", "did you mean Keywords?"}},
		{"5.1.0", "Ignorecase", Error, []string{"not a keyalert key", "did you mean Ignore_Case?"}},
		{"5.1.0", "Label_Key", Error, []string{"Label_Key: not a keyalert key", "did you mean Label_Keys?"}},
		{"4.2", "Tag_Regexp", Error, []string{"not a keyalert key", "did you mean Tag_Regex?"}},
		{"4.2", "Redis_URI", Error, []string{"not a keyalert key", "did you mean Redis_URL?"}},
		{"4.2", "Redis-URL", Error, []string{"not a keyalert key", "did you mean Redis_URL?"}},
		// Far from every key: invisible to a pre-5.1.1 plugin (documented).
		{"4.2", "Totally_Unrelated", OK, nil},
	}
	for _, c := range cases {
		t.Run(c.version+"/"+c.key, func(t *testing.T) {
			h := StartForTest(t, WithFluentBitVersion(c.version))
			cfg := instanceConfig(rs, "ka:cm", "ERROR")
			cfg[c.key] = "redis://:secret@127.0.0.1:1/0"
			mark := h.LogLen()
			rc, err := h.Init("i", cfg)
			if err != nil {
				t.Fatal(err)
			}
			if rc != c.wantRC {
				t.Fatalf("init rc %d, want %d; log:\n%s", rc, c.wantRC, h.LogSince(mark))
			}
			for _, w := range c.wantLog {
				if !h.WaitLog(mark, w, 5*time.Second) {
					t.Errorf("log lacks %q:\n%s", w, h.LogSince(mark))
				}
			}
			log := h.LogSince(mark)
			if strings.Contains(log, "secret") {
				t.Errorf("log shows the password:\n%s", log)
			}
		})
	}
}

// TestValidConfigStartsOnEveryVersion: core keys and keyalert keys in any
// case pass every version's check.
func TestValidConfigStartsOnEveryVersion(t *testing.T) {
	rs := redistest.Start(t)
	for _, v := range []string{"5.1.1", "5.1.0", "5.0.0", "4.2", "2.2"} {
		t.Run(v, func(t *testing.T) {
			h := StartForTest(t, WithFluentBitVersion(v))
			cfg := instanceConfig(rs, "ka:cm", "ERROR", "match", "*", "Retry_Limit", "no_limits",
				"workers", "2", "storage.total_limit_size", "1M", "IGNORE_CASE", "on",
				"label_keys", kubeKeys, "Tag_Label", "off", "TAG_REGEX", `^kube\.(?P<rest>.*)$`, "Max_Series", "50")
			mustInit(t, h, "i", cfg)
		})
	}
}

// TestConfigMapListsEveryKey: the map a 5.1.1 host reads with its own struct
// layout has every key of the plugin's table, in order, and older hosts get
// none (the plugin does not write past their definition).
func TestConfigMapListsEveryKey(t *testing.T) {
	var want []string
	for _, k := range config.ConfigMap() {
		want = append(want, k.Name)
	}
	got, err := StartForTest(t).ConfigMap()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("config map %v, want %v", got, want)
	}
	for _, v := range []string{"5.1.0", "4.2"} {
		if got, err := StartForTest(t, WithFluentBitVersion(v)).ConfigMap(); err == nil {
			t.Errorf("%s: config map %v, want none", v, got)
		}
	}
}

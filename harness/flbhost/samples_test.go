package flbhost

import (
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/plugin/chunk"
)

// TestSamplesPerHostThroughTheHost: one chunk collected from three hosts
// (Hostname_Key) yields three series, each carrying its own host's first
// lines, not only the first host's; Samples_Per_Flush then caps the flush.
func TestSamplesPerHostThroughTheHost(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client()
	h := StartForTest(t)
	var c []byte
	for i := range 4 {
		for _, host := range []string{"web-1", "web-2", "web-3"} {
			r := map[string]any{"log": fmt.Sprintf("ERROR %s line %d", host, i), "hostname": host}
			var err error
			if c, err = chunk.AppendEvent(c, chunk.FormatV2, base, chunk.EventTime, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	cases := []struct {
		name string
		set  []string
		want map[string][]string // host -> samples
	}{
		{"every host gets its own samples",
			[]string{"Hostname_Key", "hostname", "Samples", "2"},
			map[string][]string{
				"web-1": {"ERROR web-1 line 0", "ERROR web-1 line 1"},
				"web-2": {"ERROR web-2 line 0", "ERROR web-2 line 1"},
				"web-3": {"ERROR web-3 line 0", "ERROR web-3 line 1"},
			}},
		{"the flush bound takes lines in record order",
			[]string{"Hostname_Key", "hostname", "Samples", "2", "Samples_Per_Flush", "4"},
			map[string][]string{
				"web-1": {"ERROR web-1 line 0", "ERROR web-1 line 1"},
				"web-2": {"ERROR web-2 line 0"},
				"web-3": {"ERROR web-3 line 0"},
			}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			inst, key := fmt.Sprintf("samples%d", i), fmt.Sprintf("ka:samples%d", i)
			mustInit(t, h, inst, instanceConfig(rs, key, "ERROR", tc.set...))
			mustFlush(t, h, inst, "app", c, OK)
			got := map[string][]string{}
			for _, e := range readEntries(t, rc, key) {
				if e.Count != 4 || e.Tag != "app" {
					t.Errorf("entry %s/%s: count %d tag %q, want 4 and app", e.Keyword.ID(), e.Host, e.Count, e.Tag)
				}
				got[e.Host] = append(got[e.Host], e.Samples...)
			}
			if !maps.EqualFunc(got, tc.want, slices.Equal) {
				t.Errorf("samples per host %q, want %q", got, tc.want)
			}
		})
	}
}

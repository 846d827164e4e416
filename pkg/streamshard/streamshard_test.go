package streamshard

import (
	"fmt"
	"testing"

	"github.com/keyalert/keyalert/pkg/stream"
)

func TestShardKeysHaveHashTagsOfTheirOwn(t *testing.T) {
	tests := []struct {
		stream string
		want   []string
	}{
		{"keyalert:events", []string{"keyalert:events", "keyalert:events#1", "keyalert:events#2"}},
		{"{app}:events", []string{"{app}:events", "{app#1}:events", "{app#2}:events"}},
		{"x{a}y{b}", []string{"x{a}y{b}", "x{a#1}y{b}", "x{a#2}y{b}"}},
	}
	for _, tt := range tests {
		got := Keys(tt.stream, 3)
		if fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("Keys(%q, 3) = %v, want %v", tt.stream, got, tt.want)
		}
		tags := map[string]bool{}
		for _, k := range got {
			tags[stream.HashTag(k)] = true
		}
		if len(tags) != 3 {
			t.Errorf("shards of %q share hash tags: %v", tt.stream, tags)
		}
	}
}

func TestOfIsStableAndSpreadsHosts(t *testing.T) {
	if Of("any", 1) != 0 || Of("any", 0) != 0 {
		t.Fatal("one shard is shard 0")
	}
	per := make([]int, 3)
	for i := 0; i < 3000; i++ {
		h := fmt.Sprintf("host-%d", i)
		s := Of(h, 3)
		if s != Of(h, 3) || s < 0 || s >= 3 {
			t.Fatalf("Of(%q, 3) = %d, unstable or out of range", h, s)
		}
		per[s]++
	}
	for i, n := range per {
		if n < 800 {
			t.Errorf("shard %d got %d of 3000 hosts", i, n)
		}
	}
}

func TestCheckBoundsTheCount(t *testing.T) {
	for n, ok := range map[int]bool{0: false, 1: true, Max: true, Max + 1: false} {
		if (Check(n) == nil) != ok {
			t.Errorf("Check(%d) = %v", n, Check(n))
		}
	}
}

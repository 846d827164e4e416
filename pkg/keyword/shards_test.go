package keyword

import (
	"bytes"
	"testing"
)

// The shard count rides in the set document: absent for one shard (the
// document is then byte for byte the one before shards), covered by the
// sum, and read back by DecodeSetDoc; DecodeSet ignores it.
func TestSetCarriesTheStreamShards(t *testing.T) {
	specs := []Spec{{Text: "Exception"}}
	plain, err := EncodeSet(specs)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		shards, want int
	}{{0, 1}, {1, 1}, {3, 3}} {
		doc, err := EncodeSetShards(specs, tt.shards)
		if err != nil {
			t.Fatal(err)
		}
		if tt.want == 1 && !bytes.Equal(doc, plain) {
			t.Errorf("shards %d: %s, want the document without shards %s", tt.shards, doc, plain)
		}
		if _, ok := VerifiedSum(doc); !ok {
			t.Errorf("shards %d: sum of %s does not verify", tt.shards, doc)
		}
		set, err := DecodeSetDoc(doc)
		if err != nil || set.Shards != tt.want || len(set.Keywords) != 1 {
			t.Errorf("shards %d: DecodeSetDoc = %+v, %v; want %d shards", tt.shards, set, err, tt.want)
		}
		if ks, err := DecodeSet(doc); err != nil || len(ks) != 1 {
			t.Errorf("shards %d: DecodeSet = %v, %v", tt.shards, ks, err)
		}
	}
	three, _ := EncodeSetShards(specs, 3)
	if s1, _ := VerifiedSum(plain); s1 == func() string { s, _ := VerifiedSum(three); return s }() {
		t.Error("the sum does not change with the shard count: followers would not re-read the set")
	}
	if _, err := DecodeSetDoc([]byte(`{"v":1,"shards":-2,"keywords":[]}`)); err == nil {
		t.Error("a negative shard count decoded")
	}
}

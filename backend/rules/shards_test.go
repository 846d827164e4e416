package rules

import (
	"context"
	"testing"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
)

// The keyword set carries KEYALERT_STREAM_SHARDS to the plugins, and a
// second sync of the same set writes nothing.
func TestPublishedSetNamesTheStreamShards(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	s := NewStore(srv.Client(), Options{StreamShards: 3}, nil, nil)
	r, err := s.Create(ctx, testRule(t, "a", "x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SyncKeywords(ctx, []Rule{r}); err != nil {
		t.Fatal(err)
	}
	doc, err := s.rdb.Get(ctx, DefaultKeywordsKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	set, err := keyword.DecodeSetDoc(doc)
	if err != nil || set.Shards != 3 || len(set.Keywords) != 1 {
		t.Fatalf("published %s: %+v, %v; want 3 shards and the rule's keyword", doc, set, err)
	}
	if wrote, err := s.SyncKeywords(ctx, []Rule{r}); err != nil || wrote {
		t.Errorf("second sync: wrote=%v err=%v, want a no-op", wrote, err)
	}
}

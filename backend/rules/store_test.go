package rules

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
)

func testRule(t *testing.T, name string, kws ...string) Rule {
	m := validBody()
	m["name"] = name
	m["keywords"] = kws
	r, errs := Decode(encode(t, m), DecodeOptions{})
	if errs.Err() != nil {
		t.Fatal(errs)
	}
	return r
}

func publishedSet(t *testing.T, s *Store) []string {
	t.Helper()
	b, err := s.rdb.Get(context.Background(), keyword.DefaultSetKey).Bytes()
	if err != nil {
		t.Fatalf("get keyword set: %v", err)
	}
	specs, err := keyword.DecodeSet(b)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(specs))
	for i, sp := range specs {
		out[i] = sp.ID()
	}
	return out
}

func TestStoreCRUDPublishesKeywordUnion(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	s := NewStore(srv.Client(), Options{}, nil, nil)

	a, err := s.Create(ctx, testRule(t, "a", "Exception", "Timeout"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := s.Create(ctx, testRule(t, "b", "Exception", "OOM"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(publishedSet(t, s), ","); got != "substring:Exception,substring:OOM,substring:Timeout" {
		t.Fatalf("published %s", got)
	}
	got, err := s.Get(ctx, a.ID)
	if err != nil || got.Name != "a" || got.PagerDuty.RoutingKey.Reveal() != testKey {
		t.Fatalf("get: %+v %v", got, err)
	}

	b.Enabled = false
	if _, err := s.Update(ctx, b.ID, b); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(publishedSet(t, s), ","); got != "substring:Exception,substring:Timeout" {
		t.Fatalf("after disabling b: %s", got)
	}
	if err := s.Delete(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if got := publishedSet(t, s); len(got) != 0 {
		t.Fatalf("after deleting a, only a disabled rule remains: %v", got)
	}
	if refs, _ := s.rdb.HGetAll(ctx, KeyKeywordRefs).Result(); len(refs) != 0 {
		t.Fatalf("keyword references left behind: %v", refs)
	}
	if _, err := s.Get(ctx, a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	if _, err := s.Update(ctx, a.ID, a); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update deleted: %v", err)
	}
	if err := s.Delete(ctx, a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete deleted: %v", err)
	}
	snap, err := s.Snapshot(ctx)
	if err != nil || len(snap.Rules) != 1 || snap.Version != 4 {
		t.Fatalf("snapshot %+v %v", snap, err)
	}
}

func TestStoreKeepsRoutingKeyOutOfRuleDocuments(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	s := NewStore(srv.Client(), Options{}, nil, nil)
	r, err := s.Create(ctx, testRule(t, "a", "x"))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := s.rdb.HGet(ctx, KeyRules, r.ID).Result()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(doc, testKey) {
		t.Fatalf("rule document holds the routing key: %s", doc)
	}
}

func TestSyncKeywordsRepairsAStaleSet(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	s := NewStore(srv.Client(), Options{KeywordsKey: "custom:keywords"}, nil, nil)
	r, err := s.Create(ctx, testRule(t, "a", "x"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.rdb.Set(ctx, "custom:keywords", `{"v":1,"keywords":[]}`, 0).Err(); err != nil {
		t.Fatal(err)
	}
	wrote, err := s.SyncKeywords(ctx, []Rule{r})
	if err != nil || !wrote {
		t.Fatalf("sync: wrote=%v err=%v", wrote, err)
	}
	wrote, err = s.SyncKeywords(ctx, []Rule{r})
	if err != nil || wrote {
		t.Fatalf("second sync must be a no-op: wrote=%v err=%v", wrote, err)
	}
}

func TestZeroOptionsPublishToTheDefaultKey(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	s := NewStore(srv.Client(), Options{}, nil, nil)
	if _, err := s.Create(ctx, testRule(t, "a", "x")); err != nil {
		t.Fatal(err)
	}
	if n, err := s.rdb.Exists(ctx, DefaultKeywordsKey).Result(); err != nil || n != 1 {
		t.Fatalf("keyword set at %s: exists=%d err=%v", DefaultKeywordsKey, n, err)
	}
}

// Publish compares sums (a GETRANGE) rather than whole documents, and leaves
// a document with a verified sum for agents to poll cheaply.
func TestPublishWritesOnlyAChangedSum(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	s := NewStore(srv.Client(), Options{KeywordsKey: "pub:keywords"}, nil, nil)
	set := func(specs ...keyword.Spec) []byte {
		b, err := keyword.EncodeSet(specs)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	x := set(keyword.Spec{Text: "x"})
	tests := []struct {
		name      string
		stored    string // "" deletes the key
		publish   []byte
		wantWrote bool
	}{
		{"absent key is written", "", x, true},
		{"same set is left alone", string(x), x, false},
		{"same set without sum (older keyalertd) is rewritten with one", `{"v":1,"keywords":[{"text":"x","match":"substring","ignore_case":false}]}`, x, true},
		{"other set is written", string(set(keyword.Spec{Text: "y"})), x, true},
		{"set edited by hand under its old sum is repaired", strings.Replace(string(x), `"x"`, `"xyz"`, 1), x, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.stored == "" {
				s.rdb.Del(ctx, "pub:keywords")
			} else {
				s.rdb.Set(ctx, "pub:keywords", tt.stored, 0)
			}
			wrote, err := s.Publish(ctx, tt.publish)
			if err != nil || wrote != tt.wantWrote {
				t.Fatalf("wrote=%v err=%v, want wrote=%v", wrote, err, tt.wantWrote)
			}
			got, _ := s.rdb.Get(ctx, "pub:keywords").Bytes()
			if _, ok := keyword.VerifiedSum(got); !ok {
				t.Fatalf("stored document has no verified sum: %s", got)
			}
		})
	}
}

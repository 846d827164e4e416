package notify_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/rules"
)

const key = rules.Secret("R0123456789abcdef0123456789ABCDE")

func TestStoredFormatKeepsTheTargetOnlyWhereStored(t *testing.T) {
	n := notify.Notification{Action: notify.Trigger, AlertID: "a1", DedupKey: "keyalert-a1", Target: key,
		Rule: notify.Rule{ID: "r1", Name: "r"}, CountsPerMinute: map[string]int64{"2025-03-01T12:00:00Z": 3},
		At: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}
	b, err := notify.Marshal(n)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"v":1`) {
		t.Fatalf("no version in %s", b)
	}
	back, err := notify.Unmarshal(b)
	if err != nil || back.Target != key || back.DedupKey != n.DedupKey || back.CountsPerMinute["2025-03-01T12:00:00Z"] != 3 || !back.At.Equal(n.At) {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	// Any other encoding redacts it: the value may be logged or shown.
	plain, _ := json.Marshal(n)
	if strings.Contains(string(plain), key.Reveal()) {
		t.Fatalf("plain JSON shows the target: %s", plain)
	}
}

func TestUnknownVersionIsAnError(t *testing.T) {
	for _, doc := range []string{`{"v":2,"action":"trigger"}`, `{"action":"trigger"}`} {
		if _, err := notify.Unmarshal([]byte(doc)); !errors.Is(err, notify.ErrVersion) {
			t.Errorf("%s: %v, want ErrVersion", doc, err)
		}
	}
}

type nop struct{}

func (nop) Encode(notify.Notification) ([]byte, error)   { return nil, nil }
func (nop) Send(context.Context, []byte) notify.Delivery { return notify.Delivery{} }

func TestRegistryHoldsEachNameOnce(t *testing.T) {
	reg := notify.NewRegistry()
	if err := reg.Register("b", nop{}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register("a", nop{}); err != nil {
		t.Fatal(err)
	}
	if err := reg.Register("a", nop{}); err == nil {
		t.Fatal("registered a name twice")
	}
	if _, ok := reg.Lookup("a"); !ok {
		t.Fatal("a not found")
	}
	if _, ok := reg.Lookup("c"); ok {
		t.Fatal("c found")
	}
	if got := strings.Join(reg.Names(), ","); got != "a,b" {
		t.Fatalf("names %s", got)
	}
}

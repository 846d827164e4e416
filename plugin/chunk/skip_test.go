package chunk

import (
	"errors"
	"testing"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// FuzzSkip: skip agrees with msgp.Skip on every input: the same end for an
// object msgp accepts, an error wherever msgp has one (except msgp's
// recursion limit, which skip does not need).
func FuzzSkip(f *testing.F) {
	rec := map[string]any{
		"log": "ERROR x", "n": int64(-3), "u": uint64(1 << 40), "f": 1.5, "b": []byte{1, 2}, "t": true, "z": nil,
		"kubernetes": map[string]any{"labels": map[string]any{"app": "web"}, "list": []any{"a", int64(300), 2.5}},
	}
	ev, err := AppendEvent(nil, FormatV2, time.Unix(1700000000, 5), EventTime, rec)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ev)
	for _, cut := range []int{1, 5, len(ev) / 2, len(ev) - 1} {
		f.Add(ev[:cut])
	}
	for _, b := range [][]byte{
		msgp.AppendString(nil, string(make([]byte, 300))), msgp.AppendString(nil, string(make([]byte, 70000))),
		ext(f, 3), ext(f, 17), ext(f, 300),
		msgp.AppendMapHeader(nil, 70000), msgp.AppendArrayHeader(nil, 1<<20), {0xc1}, {0xdf, 0xff, 0xff, 0xff, 0xff},
		{0xd7, 0, 0, 0, 0, 0, 0, 0, 0, 0}, {0xc7, 2, 1, 9, 9}, {0xc8, 0, 1, 1, 9}, {0xc9, 0, 0, 0, 1, 1, 9},
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := skip(b)
		want, werr := msgp.Skip(b)
		switch {
		case werr == nil && err != nil:
			t.Fatalf("% x: skip error %v, msgp none", b, err)
		case werr == nil && len(got) != len(want):
			t.Fatalf("% x: skip leaves %d bytes, msgp %d", b, len(got), len(want))
		case werr != nil && err == nil && !errors.Is(werr, msgp.ErrRecursion):
			t.Fatalf("% x: msgp error %v, skip none (leaves %d bytes)", b, werr, len(got))
		}
	})
}

func ext(f *testing.F, n int) []byte {
	b, err := msgp.AppendExtension(nil, &msgp.RawExtension{Type: 5, Data: make([]byte, n)})
	if err != nil {
		f.Fatal(err)
	}
	return b
}

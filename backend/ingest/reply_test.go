package ingest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"unsafe"

	"github.com/keyalert/keyalert/harness/redistest"
	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
	"github.com/redis/go-redis/v9"
)

// sortedPairs orders a message's pairs by name, so that messages from the
// raw reply (stream order) and go-redis's maps (no order) compare.
func sortedPairs(kv []string) []string {
	type pair struct{ k, v string }
	ps := make([]pair, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		ps = append(ps, pair{kv[i], kv[i+1]})
	}
	sort.Slice(ps, func(a, b int) bool { return ps[a].k < ps[b].k })
	out := make([]string, 0, len(kv))
	for _, p := range ps {
		out = append(out, p.k, p.v)
	}
	return out
}

func TestRawReadReplyEqualsGoRedisInBothProtocols(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: proto})
			defer rdb.Close()
			key := fmt.Sprintf("reply:%d", proto)
			rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: values(entry(1, "err", "h", "t", 1714557600, 3))})
			rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []string{"odd\r\nname", "", "ünï", strings.Repeat("x", 70000)}})
			gone := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []string{"a", "1"}}).Val()
			rdb.XGroupCreate(ctx, key, "g", "0")
			read := func(id string) ([]message, error) {
				cmd := redis.NewRawCmd(ctx, "XREADGROUP", "GROUP", "g", "c", "COUNT", 10, "STREAMS", key, id)
				rdb.Process(ctx, cmd)
				raw, err := cmd.Bytes()
				if err != nil {
					t.Fatal(err)
				}
				return parseReadReply(raw)
			}
			got, err := read(">")
			if err != nil || len(got) != 3 {
				t.Fatalf("new entries: %d messages, error %v", len(got), err)
			}
			rdb.XDel(ctx, key, gone)
			got, err = read("0") // own pending, one of them deleted meanwhile
			if err != nil {
				t.Fatal(err)
			}
			res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{key, "0"}, Count: 10, Block: -1}).Result()
			if err != nil {
				t.Fatal(err)
			}
			sameMessages(t, got, fromXMessages(res[0].Messages))
			if got[2].kv != nil {
				t.Errorf("deleted entry has pairs %q", got[2].kv)
			}
			if got, err := read(">"); err != nil || len(got) != 0 {
				t.Errorf("nothing new: %d messages, error %v", len(got), err)
			}
			_, err = func() ([]message, error) {
				cmd := redis.NewRawCmd(ctx, "XREADGROUP", "GROUP", "nogroup", "c", "STREAMS", key, ">")
				rdb.Process(ctx, cmd)
				return parseReadReply(cmd.Val())
			}()
			var er errorReply
			if !errors.As(err, &er) || !strings.HasPrefix(err.Error(), "NOGROUP") {
				t.Errorf("missing group: error %v, want the NOGROUP reply", err)
			}
		})
	}
}

func TestParseReadReplyRejectsMalformedReplies(t *testing.T) {
	entry := "*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n"
	tests := []struct{ name, raw string }{
		{"empty", ""},
		{"truncated string", "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\na\r\n$5\r\nb\r\n"},
		{"two streams", "*2\r\n"},
		{"bad length", "*1\r\n*2\r\n$1\r\ns\r\n*x\r\n"},
		{"integer for a string", "*1\r\n*2\r\n:1\r\n*0\r\n"},
		{"string without CRLF", "*1\r\n*2\r\n$1\r\nsXX*1\r\n" + entry},
		{"trailing bytes", "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n" + entry + "+x\r\n"},
		{"entry of three items", "*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*3\r\n"},
		{"huge count", "*1\r\n*2\r\n$1\r\ns\r\n*99999999\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if msgs, err := parseReadReply([]byte(tt.raw)); err == nil {
				t.Fatalf("parsed %q into %v", tt.raw, msgs)
			}
		})
	}
	if msgs, err := parseReadReply([]byte("*1\r\n*2\r\n$1\r\ns\r\n*1\r\n" + entry)); err != nil || len(msgs) != 1 || msgs[0].kv[1] != "b" {
		t.Fatalf("well-formed reply: %v, %v", msgs, err)
	}
}

// FuzzParseReadReply: any bytes give messages or an error, never a panic,
// and whatever parses has an id and whole pairs.
func FuzzParseReadReply(f *testing.F) {
	f.Add([]byte("*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n"))
	f.Add([]byte("%1\r\n$1\r\ns\r\n*2\r\n*2\r\n$3\r\n1-0\r\n%1\r\n+a\r\n+b\r\n*2\r\n$3\r\n1-1\r\n_\r\n"))
	f.Add([]byte("*-1\r\n"))
	f.Add([]byte("_\r\n"))
	f.Add([]byte("-NOGROUP no such group\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		msgs, err := parseReadReply(raw)
		wholePairs(t, msgs, err)
	})
}

// wholePairs fails t if a reply that parsed has a message of odd items.
func wholePairs(t *testing.T, msgs []message, err error) {
	if err != nil {
		return
	}
	for _, m := range msgs {
		if len(m.kv)%2 != 0 {
			t.Fatalf("message %q has %d items", m.id, len(m.kv))
		}
	}
}

// sameMessages fails t unless got and go-redis's want hold the same ids and
// pairs (in any order of pairs).
func sameMessages(t *testing.T, got, want []message) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d messages, go-redis read %d", len(got), len(want))
	}
	for i := range got {
		if got[i].id != want[i].id || !reflect.DeepEqual(sortedPairs(got[i].kv), sortedPairs(want[i].kv)) {
			t.Errorf("message %d: %q %q, go-redis %q %q", i, got[i].id, got[i].kv, want[i].id, want[i].kv)
		}
	}
}

// The XRANGE reply the cursor reads, parsed raw, equals go-redis's XRange in
// both protocols, odd names and values and an empty range included.
func TestRawRangeReplyEqualsGoRedisInBothProtocols(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), Protocol: proto})
			defer rdb.Close()
			key := fmt.Sprintf("range:%d", proto)
			first := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: values(entry(1, "err", "h", "t", 1714557600, 3))}).Val()
			rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []string{"odd\r\nname", "", "ünï", strings.Repeat("x", 70000)}})
			last := rdb.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []string{"a", "1"}}).Val()
			for _, after := range []string{"0-0", first, last} {
				cmd := redis.NewRawCmd(ctx, "XRANGE", key, "("+after, "+", "COUNT", 10)
				rdb.Process(ctx, cmd)
				raw, err := cmd.Bytes()
				if err != nil {
					t.Fatal(err)
				}
				got, err := parseRangeReply(string(raw))
				if err != nil {
					t.Fatalf("after %s: %v", after, err)
				}
				res, err := rdb.XRangeN(ctx, key, "("+after, "+", 10).Result()
				if err != nil {
					t.Fatal(err)
				}
				sameMessages(t, got, fromXMessages(res))
			}
		})
	}
}

// FuzzParseRangeReply: any bytes give messages or an error, never a panic,
// and whatever parses has whole pairs.
func FuzzParseRangeReply(f *testing.F) {
	f.Add([]byte("*1\r\n*2\r\n$3\r\n1-0\r\n*2\r\n$1\r\na\r\n$1\r\nb\r\n"))
	f.Add([]byte("*0\r\n"))
	f.Add([]byte("*2\r\n*2\r\n$3\r\n1-0\r\n%1\r\n+a\r\n+b\r\n*2\r\n$3\r\n1-1\r\n_\r\n"))
	f.Add([]byte("-ERR wrong type\r\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		msgs, err := parseRangeReply(string(raw))
		wholePairs(t, msgs, err)
	})
}

// What OnApplied keeps must not pin the read reply its strings came from:
// detach copies every string of the entries out of it.
func TestDetachedEntriesShareNoBytesWithTheReply(t *testing.T) {
	reply := strings.Repeat("0123456789abcdef", 4) + "kw host tag app web line one line two"
	part := func(s string) string {
		i := strings.Index(reply, s)
		if i < 0 {
			t.Fatalf("%q not in the reply", s)
		}
		return reply[i : i+len(s)]
	}
	e := stream.Entry{Batch: reply[:32], Keyword: keyword.Spec{Text: part("kw")}, Tag: part("tag"), Host: part("host"),
		Producer: reply[:16], Attempt: reply[16:32], Labels: []stream.Label{{Name: part("app"), Value: part("web")}},
		Samples: []string{part("line one"), part("line two")}}
	es := []stream.Entry{e, e}
	es[1].Labels = []stream.Label{{Name: part("app"), Value: part("web")}}
	detach(es)
	lo := uintptr(unsafe.Pointer(unsafe.StringData(reply)))
	hi := lo + uintptr(len(reply))
	for i, e := range es {
		strs := map[string]string{"batch": e.Batch, "keyword": e.Keyword.Text, "tag": e.Tag, "host": e.Host,
			"producer": e.Producer, "attempt": e.Attempt, "label name": e.Labels[0].Name, "label value": e.Labels[0].Value,
			"sample 0": e.Samples[0], "sample 1": e.Samples[1]}
		for what, s := range strs {
			if p := uintptr(unsafe.Pointer(unsafe.StringData(s))); p >= lo && p < hi {
				t.Errorf("entry %d: %s %q is still in the reply", i, what, s)
			}
		}
		if e.Host != "host" || e.Labels[0].Value != "web" || e.Samples[1] != "line two" || e.Attempt != reply[16:32] {
			t.Errorf("entry %d changed: %+v", i, e)
		}
	}
}

// detachEach is detach as it was before the copies went into one buffer per
// batch: a copy per distinct string, a samples slice per entry. detach must
// give entries equal to its.
func detachEach(es []stream.Entry) {
	copies := make(map[string]string, 64)
	clone := func(s string) string {
		c, ok := copies[s]
		if !ok {
			c = strings.Clone(s)
			copies[c] = c
		}
		return c
	}
	for i := range es {
		e := &es[i]
		e.Batch, e.Keyword.Text = clone(e.Batch), clone(e.Keyword.Text)
		e.Tag, e.Host = clone(e.Tag), clone(e.Host)
		e.Producer, e.Attempt = clone(e.Producer), clone(e.Attempt)
		for j := range e.Labels {
			e.Labels[j].Name, e.Labels[j].Value = clone(e.Labels[j].Name), clone(e.Labels[j].Value)
		}
		if e.Samples != nil {
			ss := make([]string, len(e.Samples))
			for j, s := range e.Samples {
				ss[j] = strings.Clone(s)
			}
			e.Samples = ss
		}
	}
}

// entriesOfReply makes entries whose strings are all substrings of one
// buffer, as parsed from a read reply, from parts picked by pick.
func entriesOfReply(n int, pick func(i, field int) string) (es []stream.Entry, reply string) {
	var b strings.Builder
	type span struct{ off, n int }
	var spans [][12]span
	for i := 0; i < n; i++ {
		var sp [12]span
		for f := range sp {
			s := pick(i, f)
			sp[f] = span{b.Len(), len(s)}
			b.WriteString(s)
		}
		spans = append(spans, sp)
	}
	reply = b.String()
	for i, sp := range spans {
		at := func(f int) string { return reply[sp[f].off : sp[f].off+sp[f].n] }
		e := stream.Entry{Batch: at(0), Keyword: keyword.Spec{Text: at(1)}, Tag: at(2), Host: at(3),
			Producer: at(4), Attempt: at(5), Minute: int64(i), Count: int64(i + 1)}
		if i%3 != 2 {
			e.Labels = []stream.Label{{Name: at(6), Value: at(7)}, {Name: at(8), Value: at(9)}}
		}
		switch i % 4 {
		case 0:
			e.Samples = []string{at(10), at(11)}
		case 1:
			e.Samples = []string{at(11)}
		case 2:
			e.Samples = []string{}
		}
		es = append(es, e)
	}
	return es, reply
}

// checkDetach runs detach and detachEach on copies of es and compares
// them, checks that no string still points into reply, and that each
// entry's samples are a slice of its own.
func checkDetach(t *testing.T, es []stream.Entry, reply string) {
	t.Helper()
	cp := func() []stream.Entry {
		out := slices.Clone(es)
		for i := range out {
			out[i].Labels = slices.Clone(out[i].Labels)
		}
		return out
	}
	got, want := cp(), cp()
	detach(got)
	detachEach(want)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("detach gave\n%+v\nthe per-string copy gave\n%+v", got, want)
	}
	lo := uintptr(unsafe.Pointer(unsafe.StringData(reply)))
	hi := lo + uintptr(len(reply))
	in := func(s string) bool {
		p := uintptr(unsafe.Pointer(unsafe.StringData(s)))
		return s != "" && p >= lo && p < hi
	}
	for i, e := range got {
		strs := []string{e.Batch, e.Keyword.Text, e.Tag, e.Host, e.Producer, e.Attempt}
		for _, l := range e.Labels {
			strs = append(strs, l.Name, l.Value)
		}
		strs = append(strs, e.Samples...)
		for _, s := range strs {
			if in(s) {
				t.Fatalf("entry %d: %q is still in the reply", i, s)
			}
		}
		if len(e.Samples) > 0 {
			before := slices.Clone(got[min(i+1, len(got)-1)].Samples)
			_ = append(e.Samples, "appended")
			if after := got[min(i+1, len(got)-1)].Samples; !slices.Equal(before, after) {
				t.Fatalf("an append to entry %d's samples changed the next entry's: %q -> %q", i, before, after)
			}
		}
	}
}

func TestDetachGivesWhatPerStringCopiesGave(t *testing.T) {
	line := strings.Repeat("2024-05-01 worker-7 request failed ", 4)
	cases := []struct {
		name string
		n    int
		pick func(i, field int) string
	}{
		{"one entry", 1, func(i, f int) string { return fmt.Sprintf("f%d", f) }},
		{"chunks of ten entries sharing id, host, tag, producer and attempt", 50, func(i, f int) string {
			switch f {
			case 1:
				return fmt.Sprintf("keyword-%02d", i%10)
			case 10, 11:
				return fmt.Sprintf("%s %d/%d", line, i, f)
			case 6, 7, 8, 9:
				return fmt.Sprintf("label%d-%d", f, i/20)
			}
			return fmt.Sprintf("%032x", i/10*100+f)
		}},
		{"every string distinct", 20, func(i, f int) string { return fmt.Sprintf("e%d-f%d", i, f) }},
		{"empty strings", 6, func(i, f int) string {
			if (i+f)%2 == 0 {
				return ""
			}
			return "x"
		}},
		{"a field changing back and forth", 8, func(i, f int) string { return fmt.Sprintf("v%d", (i%2)*f) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			es, reply := entriesOfReply(tc.n, tc.pick)
			checkDetach(t, es, reply)
		})
	}
	t.Run("no entries", func(t *testing.T) { detach(nil) })
}

// FuzzDetach: for any strings, detach gives the entries the per-string copy
// gives, none of their strings left in the reply.
func FuzzDetach(f *testing.F) {
	f.Add(uint8(3), "batch|kw|tag|host|prod|att|app|web|ns|shop|line one|line two")
	f.Add(uint8(1), "")
	f.Add(uint8(7), "a||a|||b|b||c|c|")
	f.Fuzz(func(t *testing.T, n uint8, parts string) {
		ps := strings.Split(parts, "|")
		es, reply := entriesOfReply(int(n%32), func(i, f int) string { return ps[(i*12+f)%len(ps)] })
		checkDetach(t, es, reply)
	})
}

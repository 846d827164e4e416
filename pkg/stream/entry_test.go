package stream

import (
	"errors"
	"strings"
	"testing"

	"github.com/keyalert/keyalert/pkg/keyword"
)

func sample() Entry {
	return Entry{
		Batch:   BatchID("host-a|redis|keyalert:events", []byte("chunk bytes")),
		Keyword: keyword.Spec{Text: "Exception", Match: keyword.Substring},
		Tag:     "app.web", Host: "web-12", Minute: 1_700_000_040, Count: 37,
		Samples: []string{"java.lang.NullPointerException at Foo"}, SentMs: 1_700_000_062_123,
		Producer: ProducerID("host-a|redis|keyalert:events"), Attempt: "07a9c3e1d2b4f658",
	}
}

func values(e Entry) map[string]any { return toMap(e.AppendValues(nil)) }

// valuesV2 are the values a version 2 plugin wrote.
func valuesV2(e Entry) map[string]any { return toMap(e.AppendValuesV2(nil)) }

// valuesV1 are the values a version 1 plugin wrote.
func valuesV1(e Entry) map[string]any { return toMap(e.AppendValuesV1(nil)) }

func toMap(kv []any) map[string]any {
	m := make(map[string]any, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

func TestEntryRoundTripsThroughStreamValues(t *testing.T) {
	for _, e := range []Entry{
		func() Entry {
			e := sample()
			e.Tag, e.Host, e.Samples = "tag \"q\"\n<&>", "hôst\u2028", []string{"", "tab\there", "bad \xff utf-8 ✓"}
			return e
		}(),
		sample(),
		func() Entry { e := sample(); e.Samples, e.SentMs = nil, 0; return e }(),
		func() Entry {
			e := sample()
			e.Keyword = keyword.Spec{Text: "disk\\s+full", Match: keyword.Regex, IgnoreCase: true}
			return e
		}(),
	} {
		for _, m := range []map[string]any{values(e), valuesV2(e), valuesV1(e)} {
			got, err := Parse(m)
			if err != nil {
				t.Fatalf("Parse(%v): %v", m, err)
			}
			if got.DedupID() != e.DedupID() || got.Count != e.Count || got.SentMs != e.SentMs || len(got.Samples) != len(e.Samples) {
				t.Fatalf("round trip of version %v: got %+v, want %+v", m[FieldVersion], got, e)
			}
			// Only version 3 carries the producer and the attempt.
			if v3 := m[FieldVersion] == Version; v3 != (got.Producer == e.Producer && got.Attempt == e.Attempt) ||
				!v3 && (got.Producer != "" || got.Attempt != "") {
				t.Fatalf("version %v: producer %q attempt %q, want %q %q only in version 3", m[FieldVersion], got.Producer, got.Attempt, e.Producer, e.Attempt)
			}
			for i := range e.Samples {
				if want := strings.ToValidUTF8(e.Samples[i], "\uFFFD"); got.Samples[i] != want {
					t.Fatalf("sample %d: got %q, want %q", i, got.Samples[i], want)
				}
			}
		}
	}
}

func TestParseNamesTheBadField(t *testing.T) {
	tests := []struct {
		name, field string
		edit        func(m map[string]any)
	}{
		{"missing version", "v", func(m map[string]any) { delete(m, FieldVersion) }},
		{"unknown version", "v", func(m map[string]any) { m[FieldVersion] = "9" }},
		{"short batch", "batch", func(m map[string]any) { m[FieldBatch] = "abc" }},
		{"batch not hex", "batch", func(m map[string]any) { m[FieldBatch] = strings.Repeat("z", 32) }},
		{"bad match mode", "match", func(m map[string]any) { m[FieldMatch] = "glob" }},
		{"bad icase", "icase", func(m map[string]any) { m[FieldIgnoreCase] = "yes" }},
		{"regex that does not compile", "kw", func(m map[string]any) { m[FieldMatch] = "regex"; m[FieldKeyword] = "(" }},
		{"empty keyword", "kw", func(m map[string]any) { m[FieldKeyword] = "" }},
		{"minute not a number", "minute", func(m map[string]any) { m[FieldMinute] = "soon" }},
		{"minute not on a minute", "minute", func(m map[string]any) { m[FieldMinute] = "61" }},
		{"zero count", "count", func(m map[string]any) { m[FieldCount] = "0" }},
		{"samples not JSON", "samples", func(m map[string]any) { m[FieldSamples] = "[" }},
		{"sent_ms not a number", "sent_ms", func(m map[string]any) { m[FieldSentMs] = "x" }},
		{"value of the wrong type", "host", func(m map[string]any) { m[FieldHost] = 7 }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := valuesV1(sample())
			tc.edit(m)
			_, err := Parse(m)
			if err == nil || !strings.Contains(err.Error(), `"`+tc.field+`"`) {
				t.Fatalf("err = %v, want one naming field %q", err, tc.field)
			}
		})
	}
	m := values(sample())
	m[FieldVersion] = "5"
	if _, err := Parse(m); !errors.Is(err, ErrVersion) {
		t.Fatalf("unknown version: %v does not wrap ErrVersion", err)
	}
}

func TestParsePayloadNamesTheBadValue(t *testing.T) {
	e := sample()
	good := string(e.AppendPayload(nil))
	tests := []struct {
		name, payload, want string
	}{
		{"not JSON", "{", "not a JSON array"},
		{"eleven values", strings.Replace(good, `,"07a9c3e1d2b4f658"]`, "]", 1), "not a JSON array of the 12"},
		{"thirteen values", good[:len(good)-1] + `,"x"]`, "not a JSON array of the 12"},
		{"short producer", strings.Replace(good, e.Producer, "abc", 1), `field "e": producer = "abc"`},
		{"attempt not hex", strings.Replace(good, e.Attempt, strings.Repeat("g", 16), 1), `field "e": attempt`},
		{"short batch", strings.Replace(good, e.Batch, "abc", 1), `field "e": batch = "abc"`},
		{"bad match mode", strings.Replace(good, `"substring"`, `"glob"`, 1), `field "e": match`},
		{"icase not a bool", strings.Replace(good, "false", "0", 1), "icase: want true or false"},
		{"regex that does not compile", strings.Replace(strings.Replace(good, `"substring"`, `"regex"`, 1), `"Exception"`, `"("`, 1), `field "e": kw`},
		{"minute a string", strings.Replace(good, "1700000040", `"1700000040"`, 1), "minute: want an integer"},
		{"minute a fraction", strings.Replace(good, "1700000040", "1700000040.0", 1), "minute: want an integer"},
		{"minute not on a minute", strings.Replace(good, "1700000040", "1700000041", 1), `field "e": minute = 1700000041`},
		{"count out of range", strings.Replace(good, ",37,", ",99999999999999999999,", 1), "count: 99999999999999999999 is out of range"},
		{"zero count", strings.Replace(good, ",37,", ",0,", 1), `field "e": count = 0`},
		{"samples not strings", strings.Replace(good, `["java`, `[1,"java`, 1), "samples"},
		{"garbage after", good + "x", "not a JSON array"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseFields([]string{FieldVersion, Version, FieldEntry, tc.payload})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("payload %s: err = %v, want it to contain %q", tc.payload, err, tc.want)
			}
		})
	}
	v2 := string(e.appendPayload(nil, v2Len))
	if _, err := ParseFields([]string{FieldVersion, Version2, FieldEntry, v2[:len(v2)-1] + `,"a","b"]`}); err == nil || !strings.Contains(err.Error(), "not a JSON array of the 10") {
		t.Fatalf("version 2 with 12 values: err = %v", err)
	}
	if _, err := ParseFields([]string{FieldVersion, Version}); err == nil || !strings.Contains(err.Error(), `missing field "e"`) {
		t.Fatalf("no payload: err = %v", err)
	}
	spaced := " [ " + strings.ReplaceAll(good[1:len(good)-1], ",", " , ") + " ] "
	if _, err := ParseFields([]string{FieldVersion, Version, FieldEntry, spaced}); err != nil {
		t.Fatalf("payload with spaces: %v", err)
	}
}

func TestBatchIDDependsOnInstanceAndBytesOnly(t *testing.T) {
	a := BatchID("i1", []byte("chunk"))
	if a != BatchID("i1", []byte("chunk")) {
		t.Fatal("same instance and bytes gave different ids")
	}
	if a == BatchID("i2", []byte("chunk")) || a == BatchID("i1", []byte("chunk2")) {
		t.Fatal("different instance or bytes gave the same id")
	}
	if len(a) != 32 {
		t.Fatalf("len = %d, want 32", len(a))
	}
}

func TestDedupIDIgnoresCountSamplesAndSendTime(t *testing.T) {
	a, b := sample(), sample()
	b.Count, b.Samples, b.SentMs = 1, nil, 5
	if a.DedupID() != b.DedupID() {
		t.Fatal("dedup id depends on count, samples or send time")
	}
	for _, edit := range []func(e *Entry){
		func(e *Entry) { e.Host = "web-13" },
		func(e *Entry) { e.Tag = "app.db" },
		func(e *Entry) { e.Minute += 60 },
		func(e *Entry) { e.Keyword.IgnoreCase = true },
		func(e *Entry) { e.Batch = BatchID("x", nil) },
	} {
		c := sample()
		edit(&c)
		if c.DedupID() == a.DedupID() {
			t.Fatalf("dedup id unchanged for a different series: %+v", c)
		}
	}
}

func TestCutSampleKeepsUTF8Whole(t *testing.T) {
	long := strings.Repeat("a", MaxSampleBytes-1) + "é" + "tail"
	got := CutSample([]byte(long))
	if len(got) != MaxSampleBytes-1 {
		t.Fatalf("len = %d, want %d (the two-byte rune dropped whole)", len(got), MaxSampleBytes-1)
	}
	if s := CutSample([]byte("short")); s != "short" {
		t.Fatalf("short line changed: %q", s)
	}
}

func TestHashTagSharesTheStreamSlot(t *testing.T) {
	for in, want := range map[string]string{
		"keyalert:events": "{keyalert:events}",
		"{ka}:events":     "{ka}",
		"x{y}z":           "{y}",
	} {
		if got := HashTag(in); got != want {
			t.Errorf("HashTag(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzParse(f *testing.F) {
	e := sample()
	f.Add(FieldVersion, Version, FieldMinute, "60", e.Batch)
	f.Add(FieldCount, "-1", FieldSamples, `["a"]`, "0123")
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2, batch string) {
		m := values(sample())
		m[k1], m[k2], m[FieldBatch] = v1, v2, batch
		got, err := Parse(m)
		if err != nil {
			return
		}
		// Whatever parses must round-trip to the same identity.
		again, err := Parse(values(got))
		if err != nil || again.DedupID() != got.DedupID() {
			t.Fatalf("parsed entry does not round-trip: %v", err)
		}
	})
}

func pairs(e Entry) []string {
	var kv []string
	for _, v := range e.AppendValues(nil) {
		kv = append(kv, v.(string))
	}
	return kv
}

func TestParseFieldsRejectsRepeatedAndOddFields(t *testing.T) {
	tests := []struct {
		name string
		kv   []string
		want string
	}{
		{"a field given twice", append(pairs(sample()), FieldEntry, "[]"), `field "e" given twice`},
		{"a name without a value", append(pairs(sample()), "extra"), "want pairs"},
		{"no fields", nil, `missing field "v"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseFields(tt.kv); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
	// Unknown fields, even repeated, are left for newer plugins.
	if _, err := ParseFields(append(pairs(sample()), "x-new", "1", "x-new", "2")); err != nil {
		t.Fatalf("unknown fields: %v", err)
	}
}

// FuzzParseFields checks that field order does not matter and that the pairs
// form agrees with Parse on the same values.
func FuzzParseFields(f *testing.F) {
	f.Add(FieldMinute, "120", FieldSamples, `["x","y\u00e9"]`, uint8(0))
	f.Add(FieldCount, "0", "other", "1", uint8(3))
	f.Add(FieldBatch, "ABCDEF0123456789abcdef0123456789", FieldSentMs, "x", uint8(7))
	f.Fuzz(func(t *testing.T, k1, v1, k2, v2 string, rot uint8) {
		m := values(sample())
		m[k1], m[k2] = v1, v2
		var kv []string
		for k, v := range m {
			kv = append(kv, k, v.(string))
		}
		r := 2 * (int(rot) % (len(kv) / 2))
		kv = append(kv[r:], kv[:r]...)
		got, err := ParseFields(kv)
		want, werr := Parse(m)
		if (err == nil) != (werr == nil) {
			t.Fatalf("ParseFields error %v, Parse error %v", err, werr)
		}
		if err == nil && (got.DedupID() != want.DedupID() || got.Count != want.Count || got.SentMs != want.SentMs || strings.Join(got.Samples, "\n") != strings.Join(want.Samples, "\n")) {
			t.Fatalf("ParseFields %+v, Parse %+v", got, want)
		}
	})
}

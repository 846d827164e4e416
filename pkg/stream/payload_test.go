package stream

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/keyalert/keyalert/pkg/keyword"
)

// refPayload decodes a payload with encoding/json, the reference
// decodePayload must agree with.
func refPayload(s string, n int) (payload, error) {
	var p payload
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(s), &raw); err != nil {
		return p, err
	}
	dsts := []any{&p.batch, &p.kw, &p.match, &p.icase, &p.tag, &p.host, &p.minute, &p.count, &p.samples, &p.sentMs, &p.producer, &p.attempt, &p.labels}
	dsts = dsts[:n]
	if len(raw) != len(dsts) {
		return p, errPayload3
	}
	for k, dst := range dsts {
		if err := json.Unmarshal(raw[k], dst); err != nil {
			return p, err
		}
	}
	return p, nil
}

// FuzzDecodePayload checks the hand-written decoder against encoding/json.
func FuzzDecodePayload(f *testing.F) {
	e := sample()
	f.Add(string(e.AppendPayload(nil)))
	f.Add(string(e.appendPayload(nil, v2Len)))
	e.Labels = []Label{{"app", "shop"}, {"namespace", "prod"}}
	f.Add(string(e.AppendPayload(nil)))
	f.Add(`["a","b","c",false,"d","e",1,1,[],1,"p","q",["x",null]]`)
	f.Add(`["a","b","c",false,"d","e",1,1,[],1,null,"x"]`)
	f.Add(` [ null , "k" ,"regex",true,"","h\u00e9" , -0 , 5 , [ null, "a\"b" ] , 1 ] `)
	f.Add(`["a","b","c",false,"d","e",1.5,1,[],1]`)
	f.Add(`["a","b","c",false,"d","e",01,1,[],1]`)
	f.Add(`["a","b","c",false,"d","e",1,1,null,99999999999999999999]`)
	f.Add(`["a","b","c",false,"d","e",1,1,[1],1]`)
	f.Fuzz(func(t *testing.T, s string) {
		for _, n := range []int{v2Len, v3Len, v4Len} {
			fuzzDecode(t, s, n)
		}
	})
}

func fuzzDecode(t *testing.T, s string, n int) {
	{
		got, err := decodePayload(s, n)
		want, werr := refPayload(s, n)
		if werr == nil && (len(want.samples) > MaxSamples || len(want.labels) > 2*MaxLabels) {
			if err == nil {
				t.Fatalf("%q: %d samples accepted", s, len(want.samples))
			}
			return
		}
		if (err == nil) != (werr == nil) {
			t.Fatalf("%q: decodePayload error %v, encoding/json error %v", s, err, werr)
		}
		if err != nil {
			return
		}
		if len(got.samples) == 0 && len(want.samples) == 0 {
			got.samples, want.samples = nil, nil
		}
		if len(got.labels) == 0 && len(want.labels) == 0 {
			got.labels, want.labels = nil, nil
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: decodePayload %+v, encoding/json %+v", s, got, want)
		}
	}
}

// FuzzPayloadRoundTrip: whatever strings an entry holds, its payload reads
// back to the same values (invalid UTF-8 as U+FFFD).
func FuzzPayloadRoundTrip(f *testing.F) {
	f.Add("web-1", "app.log", "Exception", "line with \"quotes\" and \x01 and \xff", true, int64(1_700_000_040), int64(3), int64(-1))
	f.Fuzz(func(t *testing.T, host, tag, kw, line string, icase bool, minute, count, sent int64) {
		e := Entry{Batch: BatchID("x", nil), Keyword: keyword.Spec{Text: kw, IgnoreCase: icase}, Host: host, Tag: tag,
			Minute: minute, Count: count, Samples: []string{line, ""}, SentMs: sent, Producer: ProducerID(host), Attempt: NewAttempt()}
		p, err := decodePayload(string(e.AppendPayload(nil)), v3Len)
		if err != nil {
			t.Fatalf("payload of %+v: %v", e, err)
		}
		v := func(s string) string { // what encoding/json reads back
			var out string
			b, _ := json.Marshal(s)
			json.Unmarshal(b, &out)
			return out
		}
		want := payload{batch: e.Batch, kw: v(kw), match: "substring", icase: icase, tag: v(tag), host: v(host),
			minute: minute, count: count, sentMs: sent, samples: []string{v(line), ""}, producer: e.Producer, attempt: e.Attempt}
		if !reflect.DeepEqual(p, want) {
			t.Fatalf("got %+v, want %+v", p, want)
		}
	})
}

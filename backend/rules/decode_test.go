package rules

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keyalert/keyalert/pkg/keyword"
)

const testKey = "R0123456789abcdef0123456789ABCDE"

func validBody() map[string]any {
	return map[string]any{
		"name": "java exceptions", "keywords": []string{"Exception"}, "ignore_case": false,
		"match": "substring", "condition": map[string]any{"type": "threshold", "count": 5, "window": "5m"},
		"group_by": "host", "filters": map[string]any{"host": "web-*", "tag": "app.*"},
		"severity": "critical", "pagerduty": map[string]any{"routing_key": testKey},
		"repeat_interval": "1h", "resolve_after": "5m", "enabled": true, "runbook_url": "https://runbooks.example/java",
	}
}

func encode(t testing.TB, m map[string]any) []byte {
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeAcceptsTheIssueExample(t *testing.T) {
	r, errs := Decode(encode(t, validBody()), DecodeOptions{})
	if errs.Err() != nil {
		t.Fatalf("unexpected errors: %v", errs)
	}
	want := Condition{Type: Threshold, Count: 5, Window: Duration(5 * time.Minute)}
	if r.Condition != want || r.GroupBy != GroupHost || r.Severity != Critical || !r.Enabled ||
		r.PagerDuty.RoutingKey.Reveal() != testKey || r.RepeatInterval.D() != time.Hour || r.Filters.Host != "web-*" {
		t.Fatalf("decoded %+v", r)
	}
	if ids := r.KeywordIDs(); len(ids) != 1 || ids[0] != "substring:Exception" {
		t.Fatalf("keyword ids %v", ids)
	}
}

func TestDecodeFillsDefaults(t *testing.T) {
	body := `{"name":"n","keywords":["err"],"condition":{"type":"absence","window":"10m"},"pagerduty":{"routing_key":"` + testKey + `"}}`
	r, errs := Decode([]byte(body), DecodeOptions{})
	if errs.Err() != nil {
		t.Fatal(errs)
	}
	if r.Match != keyword.Substring || r.GroupBy != GroupNone || r.Severity != Error || !r.Enabled ||
		r.ResolveAfter.D() != DefaultResolve || r.RepeatInterval != 0 || r.Condition.Count != 1 {
		t.Fatalf("defaults not filled: %+v", r)
	}
	spike := `{"name":"n","keywords":["err"],"condition":{"type":"spike","window":"5m","factor":3},"pagerduty":{"routing_key":"` + testKey + `"}}`
	r, errs = Decode([]byte(spike), DecodeOptions{})
	if errs.Err() != nil {
		t.Fatal(errs)
	}
	if r.Condition.Baseline != r.Condition.Window || r.Condition.MinCount != 1 {
		t.Fatalf("spike defaults: %+v", r.Condition)
	}
}

func TestDecodeSeasonalSpikeWithinTheRetention(t *testing.T) {
	tests := []struct {
		name, seasonal string
		ok             bool
	}{
		{"6 days back with a 7d retention", `{"period":"1d","n":6}`, true},
		{"7 days and a window back with a 7d retention", `{"period":"1d","n":7}`, false},
		{"a week and a window back with a 7d retention", `{"period":"1w"}`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"name":"n","keywords":["err"],"condition":{"type":"spike","window":"5m","factor":3,"seasonal":` + tt.seasonal +
				`},"pagerduty":{"routing_key":"` + testKey + `"}}`
			_, errs := Decode([]byte(body), DecodeOptions{Retention: 7 * 24 * time.Hour})
			if tt.ok != (errs.Err() == nil) || (!tt.ok && (len(errs) != 1 || errs[0].Field != "condition.seasonal.n")) {
				t.Fatalf("errors %v, want ok=%v", errs, tt.ok)
			}
		})
	}
}

func TestDecodeSeasonalSpike(t *testing.T) {
	tests := []struct {
		name     string
		seasonal string
		want     Seasonal
	}{
		{"same window a day earlier", `{"period":"1d"}`, Seasonal{Period: Duration(24 * time.Hour), N: 1}},
		{"same window a week earlier", `{"period":"1w"}`, Seasonal{Period: Duration(7 * 24 * time.Hour), N: 1}},
		{"median of the last 7 days", `{"period":"1d","n":7}`, Seasonal{Period: Duration(24 * time.Hour), N: 7}},
		{"a week written in days", `{"period":"7d","n":2}`, Seasonal{Period: Duration(7 * 24 * time.Hour), N: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"name":"n","keywords":["err"],"condition":{"type":"spike","window":"5m","factor":3,"seasonal":` + tt.seasonal +
				`},"pagerduty":{"routing_key":"` + testKey + `"}}`
			r, errs := Decode([]byte(body), DecodeOptions{})
			if errs.Err() != nil {
				t.Fatal(errs)
			}
			if r.Condition.Seasonal != tt.want || r.Condition.Baseline != 0 || r.Condition.Lookback() != 5*time.Minute {
				t.Fatalf("condition %+v, lookback %s", r.Condition, r.Condition.Lookback())
			}
			// It survives the store's JSON round trip, compared as the engine does.
			b, _ := json.Marshal(r.Condition)
			var c Condition
			if err := json.Unmarshal(b, &c); err != nil || c != r.Condition {
				t.Fatalf("round trip %s: %+v %v", b, c, err)
			}
		})
	}
}

func TestDecodeReportsEachBadField(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m map[string]any)
		fields []string
	}{
		{"unknown top-level fields", func(m map[string]any) { m["colour"] = "red"; m["zzz"] = 1 }, []string{"colour", "zzz"}},
		{"unknown nested field", func(m map[string]any) { m["condition"].(map[string]any)["windw"] = "5m" }, []string{"condition.windw"}},
		{"filter on a name that is no label name", func(m map[string]any) { m["filters"].(map[string]any)["app.kubernetes.io/name"] = "x" }, []string{"filters.app.kubernetes.io/name"}},
		{"filter glob not a string", func(m map[string]any) { m["filters"].(map[string]any)["namespace"] = 3 }, []string{"filters.namespace"}},
		{"filters not an object", func(m map[string]any) { m["filters"] = []string{"host"} }, []string{"filters"}},
		{"empty keywords", func(m map[string]any) { m["keywords"] = []string{} }, []string{"keywords"}},
		{"missing keywords", func(m map[string]any) { delete(m, "keywords") }, []string{"keywords"}},
		{"empty keyword text", func(m map[string]any) { m["keywords"] = []string{"ok", ""} }, []string{"keywords[1]"}},
		{"duplicate keyword", func(m map[string]any) { m["keywords"] = []string{"a", "a"} }, []string{"keywords[1]"}},
		{"regex that does not compile", func(m map[string]any) { m["match"] = "regex"; m["keywords"] = []string{"disk (full"} }, []string{"keywords[0]"}},
		{"bad match enum", func(m map[string]any) { m["match"] = "glob" }, []string{"match"}},
		{"bad window", func(m map[string]any) { m["condition"].(map[string]any)["window"] = "5 minutes" }, []string{"condition.window"}},
		{"window not whole minutes", func(m map[string]any) { m["condition"].(map[string]any)["window"] = "90s" }, []string{"condition.window"}},
		{"window too long", func(m map[string]any) { m["condition"].(map[string]any)["window"] = "48h" }, []string{"condition.window"}},
		{"missing window", func(m map[string]any) { delete(m["condition"].(map[string]any), "window") }, []string{"condition.window"}},
		{"bad repeat interval", func(m map[string]any) { m["repeat_interval"] = "soon" }, []string{"repeat_interval"}},
		{"repeat interval too short", func(m map[string]any) { m["repeat_interval"] = "10s" }, []string{"repeat_interval"}},
		{"negative resolve_after", func(m map[string]any) { m["resolve_after"] = "-5m" }, []string{"resolve_after"}},
		{"window in years", func(m map[string]any) { m["condition"].(map[string]any)["window"] = "1y" }, []string{"condition.window"}},
		{"window a bare number", func(m map[string]any) { m["condition"].(map[string]any)["window"] = "5" }, []string{"condition.window"}},
		{"window of a week", func(m map[string]any) { m["condition"].(map[string]any)["window"] = "1w" }, []string{"condition.window"}},
		{"repeat interval of two weeks", func(m map[string]any) { m["repeat_interval"] = "2w" }, []string{"repeat_interval"}},
		{"resolve_after in years", func(m map[string]any) { m["resolve_after"] = "1y" }, []string{"resolve_after"}},
		{"eval_delay not whole minutes", func(m map[string]any) { m["eval_delay"] = "90s" }, []string{"eval_delay"}},
		{"eval_delay over an hour", func(m map[string]any) { m["eval_delay"] = "2h" }, []string{"eval_delay"}},
		{"forget_after under an hour", func(m map[string]any) { m["forget_after"] = "30m" }, []string{"forget_after"}},
		{"forget_after over 30d", func(m map[string]any) { m["forget_after"] = "31d" }, []string{"forget_after"}},
		{"forget_after not beyond the window", func(m map[string]any) {
			m["condition"] = map[string]any{"type": "absence", "window": "2h"}
			m["forget_after"] = "2h"
		}, []string{"forget_after"}},
		{"for not whole minutes", func(m map[string]any) { m["for"] = "90s" }, []string{"for"}},
		{"negative for", func(m map[string]any) { m["for"] = "-2m" }, []string{"for"}},
		{"for over a day", func(m map[string]any) { m["for"] = "25h" }, []string{"for"}},
		{"for a bare number", func(m map[string]any) { m["for"] = "2" }, []string{"for"}},
		{"for not a string", func(m map[string]any) { m["for"] = 120 }, []string{"for"}},
		{"seasonal period not a day or a week", func(m map[string]any) {
			m["condition"] = map[string]any{"type": "spike", "window": "5m", "factor": 2, "seasonal": map[string]any{"period": "2d"}}
		}, []string{"condition.seasonal.period"}},
		{"seasonal without period", func(m map[string]any) {
			m["condition"] = map[string]any{"type": "spike", "window": "5m", "factor": 2, "seasonal": map[string]any{"n": 3}}
		}, []string{"condition.seasonal.period"}},
		{"seasonal n over the limit", func(m map[string]any) {
			m["condition"] = map[string]any{"type": "spike", "window": "5m", "factor": 2, "seasonal": map[string]any{"period": "1d", "n": 8}}
		}, []string{"condition.seasonal.n"}},
		{"seasonal n below 1", func(m map[string]any) {
			m["condition"] = map[string]any{"type": "spike", "window": "5m", "factor": 2, "seasonal": map[string]any{"period": "1d", "n": 0}}
		}, []string{"condition.seasonal.n"}},
		{"seasonal n windows past the span", func(m map[string]any) {
			m["condition"] = map[string]any{"type": "spike", "window": "1h", "factor": 2, "seasonal": map[string]any{"period": "1d", "n": 5}}
		}, []string{"condition.seasonal.n"}},
		{"seasonal and baseline", func(m map[string]any) {
			m["condition"] = map[string]any{"type": "spike", "window": "5m", "factor": 2, "baseline": "1h", "seasonal": map[string]any{"period": "1d"}}
		}, []string{"condition.baseline"}},
		{"seasonal unknown field", func(m map[string]any) {
			m["condition"] = map[string]any{"type": "spike", "window": "5m", "factor": 2, "seasonal": map[string]any{"period": "1d", "count": 7}}
		}, []string{"condition.seasonal.count"}},
		{"seasonal not an object", func(m map[string]any) {
			m["condition"] = map[string]any{"type": "spike", "window": "5m", "factor": 2, "seasonal": "1d"}
		}, []string{"condition.seasonal"}},
		{"seasonal on threshold", func(m map[string]any) { m["condition"].(map[string]any)["seasonal"] = map[string]any{"period": "1d"} }, []string{"condition"}},
		{"spike baseline of two weeks", func(m map[string]any) {
			m["condition"] = map[string]any{"type": "spike", "window": "5m", "factor": 2, "baseline": "2w"}
		}, []string{"condition.baseline"}},
		{"spike baseline a bare number", func(m map[string]any) {
			m["condition"] = map[string]any{"type": "spike", "window": "5m", "factor": 2, "baseline": "5"}
		}, []string{"condition.baseline"}},
		{"bad condition type", func(m map[string]any) { m["condition"].(map[string]any)["type"] = "rate" }, []string{"condition.type"}},
		{"zero count", func(m map[string]any) { m["condition"].(map[string]any)["count"] = 0 }, []string{"condition.count"}},
		{"count of wrong type", func(m map[string]any) { m["condition"].(map[string]any)["count"] = "5" }, []string{"condition.count"}},
		{"threshold without count", func(m map[string]any) { delete(m["condition"].(map[string]any), "count") }, []string{"condition.count"}},
		{"spike fields on threshold", func(m map[string]any) { m["condition"].(map[string]any)["factor"] = 2 }, []string{"condition"}},
		{"spike without factor", func(m map[string]any) {
			m["condition"] = map[string]any{"type": "spike", "window": "5m"}
		}, []string{"condition.factor"}},
		{"spike factor not above 1", func(m map[string]any) {
			m["condition"] = map[string]any{"type": "spike", "window": "5m", "factor": 1, "min_count": 0}
		}, []string{"condition.factor", "condition.min_count"}},
		{"spike with count", func(m map[string]any) {
			m["condition"] = map[string]any{"type": "spike", "window": "5m", "factor": 2, "count": 3}
		}, []string{"condition.count"}},
		{"bad group_by", func(m map[string]any) { m["group_by"] = "9x" }, []string{"group_by"}},
		{"group_by list with a bad name", func(m map[string]any) { m["group_by"] = []string{"namespace", "9x"} }, []string{"group_by[1]"}},
		{"group_by list repeating a name", func(m map[string]any) { m["group_by"] = []string{"host", "app", "host"} }, []string{"group_by[2]"}},
		{"group_by list holding none", func(m map[string]any) { m["group_by"] = []string{"none", "app"} }, []string{"group_by[0]"}},
		{"group_by neither string nor list", func(m map[string]any) { m["group_by"] = 3 }, []string{"group_by"}},
		{"bad severity", func(m map[string]any) { m["severity"] = "fatal" }, []string{"severity"}},
		{"short routing key", func(m map[string]any) { m["pagerduty"] = map[string]any{"routing_key": "abc"} }, []string{"pagerduty.routing_key"}},
		{"missing routing key", func(m map[string]any) { delete(m, "pagerduty") }, []string{"pagerduty.routing_key"}},
		{"enabled not a bool", func(m map[string]any) { m["enabled"] = "yes" }, []string{"enabled"}},
		{"relative runbook url", func(m map[string]any) { m["runbook_url"] = "/wiki/java" }, []string{"runbook_url"}},
		{"empty name", func(m map[string]any) { m["name"] = "" }, []string{"name"}},
		{"name too long", func(m map[string]any) { m["name"] = strings.Repeat("n", MaxNameLen+1) }, []string{"name"}},
		{"filter too long", func(m map[string]any) { m["filters"] = map[string]any{"tag": strings.Repeat("t", MaxFilterLen+1)} }, []string{"filters.tag"}},
		{"several at once", func(m map[string]any) {
			m["severity"] = "x"
			m["group_by"] = "y-1"
			m["keywords"] = []string{}
		}, []string{"group_by", "keywords", "severity"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validBody()
			tt.mutate(m)
			_, errs := Decode(encode(t, m), DecodeOptions{})
			got := map[string]bool{}
			for _, e := range errs {
				got[e.Field] = true
			}
			for _, f := range tt.fields {
				if !got[f] {
					t.Errorf("no error for %s; got %v", f, errs)
				}
			}
			if len(got) != len(tt.fields) {
				t.Errorf("errors %v, want exactly fields %v", errs, tt.fields)
			}
		})
	}
}

func TestDecodeRejectsNonObjects(t *testing.T) {
	for _, body := range []string{``, `[]`, `"rule"`, `{"name":`, `null`} {
		_, errs := Decode([]byte(body), DecodeOptions{})
		if len(errs) != 1 || errs[0].Field != "body" {
			t.Errorf("body %q: errors %v, want one on body", body, errs)
		}
	}
}

func TestDecodeNeverEchoesABadRoutingKey(t *testing.T) {
	m := validBody()
	m["pagerduty"] = map[string]any{"routing_key": "secret-with-typo-0123456789abcde"}
	_, errs := Decode(encode(t, m), DecodeOptions{})
	if errs.Err() == nil || strings.Contains(errs.Error(), "secret-with-typo") {
		t.Fatalf("errors %v: want a routing key error without the key", errs)
	}
}

func TestDecodeRoutingKeyOptions(t *testing.T) {
	m := validBody()
	delete(m, "pagerduty")
	if _, errs := Decode(encode(t, m), DecodeOptions{DefaultRoutingKey: true}); errs.Err() != nil {
		t.Fatalf("with a default key, an empty one is fine: %v", errs)
	}
	existing := Rule{PagerDuty: PagerDuty{RoutingKey: testKey}}
	m["pagerduty"] = map[string]any{"routing_key": Secret(testKey).Redacted()}
	r, errs := Decode(encode(t, m), DecodeOptions{Existing: &existing})
	if errs.Err() != nil || r.PagerDuty.RoutingKey.Reveal() != testKey {
		t.Fatalf("redacted echo on update must keep the stored key: %v %q", errs, r.PagerDuty.RoutingKey.Reveal())
	}
}

func TestSecretIsRedactedEverywhere(t *testing.T) {
	r := Rule{Name: "x", PagerDuty: PagerDuty{RoutingKey: testKey}}
	js, _ := json.Marshal(r)
	var sb strings.Builder
	for _, s := range []string{string(js), r.PagerDuty.RoutingKey.String(), r.PagerDuty.RoutingKey.GoString(),
		r.PagerDuty.RoutingKey.LogValue().String()} {
		sb.WriteString(s)
	}
	if strings.Contains(sb.String(), testKey[:28]) {
		t.Fatalf("routing key leaked: %s", sb.String())
	}
	if !strings.Contains(string(js), "BCDE") {
		t.Fatalf("redacted form should keep the last 4 characters: %s", js)
	}
}

func TestDecodeReadsDaysAndWeeks(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(m map[string]any)
		get    func(r Rule) time.Duration
		want   time.Duration
	}{
		{"window of a day", func(m map[string]any) { m["condition"].(map[string]any)["window"] = "1d" },
			func(r Rule) time.Duration { return r.Condition.Window.D() }, 24 * time.Hour},
		{"repeat interval of 7d", func(m map[string]any) { m["repeat_interval"] = "7d" },
			func(r Rule) time.Duration { return r.RepeatInterval.D() }, 7 * 24 * time.Hour},
		{"repeat interval of 1w", func(m map[string]any) { m["repeat_interval"] = "1w" },
			func(r Rule) time.Duration { return r.RepeatInterval.D() }, 7 * 24 * time.Hour},
		{"resolve_after of 1d", func(m map[string]any) { m["resolve_after"] = "1d" },
			func(r Rule) time.Duration { return r.ResolveAfter.D() }, 24 * time.Hour},
		{"for of 2m", func(m map[string]any) { m["for"] = "2m" },
			func(r Rule) time.Duration { return r.For.D() }, 2 * time.Minute},
		{"for of 1d", func(m map[string]any) { m["for"] = "1d" },
			func(r Rule) time.Duration { return r.For.D() }, 24 * time.Hour},
		{"for left out: pages at once", func(m map[string]any) {},
			func(r Rule) time.Duration { return r.For.D() }, 0},
		{"forget_after of 7d", func(m map[string]any) { m["forget_after"] = "7d" },
			func(r Rule) time.Duration { return r.ForgetAfter.D() }, 7 * 24 * time.Hour},
		{"forget_after left out: the engine's default", func(m map[string]any) {},
			func(r Rule) time.Duration { return r.ForgetAfter.D() }, 0},
		{"eval_delay of 5m", func(m map[string]any) { m["eval_delay"] = "5m" },
			func(r Rule) time.Duration { return r.EvalDelay.D() }, 5 * time.Minute},
		{"spike baseline of 7d", func(m map[string]any) {
			m["condition"] = map[string]any{"type": "spike", "window": "5m", "factor": 2, "baseline": "7d"}
		}, func(r Rule) time.Duration { return r.Condition.Baseline.D() }, 7 * 24 * time.Hour},
		{"spike baseline of 1d12h", func(m map[string]any) {
			m["condition"] = map[string]any{"type": "spike", "window": "5m", "factor": 2, "baseline": "1d12h"}
		}, func(r Rule) time.Duration { return r.Condition.Baseline.D() }, 36 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validBody()
			tt.mutate(m)
			r, errs := Decode(encode(t, m), DecodeOptions{})
			if errs.Err() != nil {
				t.Fatal(errs)
			}
			if got := tt.get(r); got != tt.want {
				t.Errorf("decoded %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDurationUnmarshalJSON(t *testing.T) {
	tests := []struct {
		json string
		want time.Duration
		ok   bool
	}{
		{`"90s"`, 90 * time.Second, true},
		{`"7d"`, 7 * 24 * time.Hour, true},
		{`"2w"`, 14 * 24 * time.Hour, true},
		{`"1y"`, 0, false},
		{`"300"`, 0, false}, // a bare number: seconds or minutes? refused with a hint
		{`5`, 0, false},
	}
	for _, tt := range tests {
		var d Duration
		err := json.Unmarshal([]byte(tt.json), &d)
		if (err == nil) != tt.ok || (tt.ok && d.D() != tt.want) {
			t.Errorf("%s: got %v, %v; want %v (ok %v)", tt.json, d.D(), err, tt.want, tt.ok)
		}
	}
}

func TestDurationJSONRoundTrip(t *testing.T) {
	for _, d := range []time.Duration{0, 90 * time.Second, 5 * time.Minute, time.Hour, 1500 * time.Millisecond, 14 * 24 * time.Hour} {
		b, _ := json.Marshal(Duration(d))
		var back Duration
		if err := json.Unmarshal(b, &back); err != nil || back.D() != d {
			t.Errorf("%v -> %s -> %v (%v)", d, b, back, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encode(f, validBody()))
	f.Add([]byte(`{"condition":{"type":"spike","factor":1e309}}`))
	f.Add([]byte(`{"keywords":["(?i"],"match":"regex"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		r, errs := Decode(body, DecodeOptions{})
		if errs.Err() != nil {
			return
		}
		// An accepted rule must be usable by the engine and the keyword set.
		if len(r.Keywords) == 0 || r.Condition.Window.D() < time.Minute || r.Condition.Window.D()%time.Minute != 0 {
			t.Fatalf("accepted an unusable rule: %+v", r)
		}
		if _, err := KeywordSet([]Rule{r}); err != nil {
			t.Fatalf("accepted rule whose keywords do not encode: %v", err)
		}
	})
}

package chunk

import (
	"testing"

	"github.com/keyalert/keyalert/harness/loghub"
)

// BenchmarkRead walks every event and its record's values in place, the
// decode share of a flush.
func BenchmarkRead(b *testing.B) {
	lines := loghub.All(b)
	data := Lines(FormatV2, EventTime, t0, lines)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	r := &Reader{}
	var ev Event
	n := 0
	for i := 0; i < b.N; i++ {
		r.Reset(data)
		for r.Next(&ev) {
			m, _ := NewMap(ev.Record)
			for {
				_, v, ok := m.Next()
				if !ok {
					break
				}
				if t, ok := Text(v); ok {
					n += len(t)
				}
			}
		}
	}
	b.ReportMetric(float64(b.N)*float64(len(lines))/b.Elapsed().Seconds(), "records/s")
}

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

// BenchmarkSkip skips kubernetes-filter-shaped records (nested maps of
// strings), the decoder's hottest loop.
func BenchmarkSkip(b *testing.B) {
	rec := map[string]any{
		"log": "2024-04-30 09:12:44 ERROR connection refused by upstream", "stream": "stdout", "time": "2024-04-30T09:12:44.000000000Z", "level": "error",
		"kubernetes": map[string]any{
			"pod_name": "web-5d8c7b9f6d-x7k2p", "namespace_name": "team-1", "pod_id": "0b1c7e2a-6f4d-4c1e-9a8b-3d2e1f0a9b8c",
			"labels":      map[string]any{"app": "web", "pod-template-hash": "5d8c7b9f6d"},
			"annotations": map[string]any{"kubectl.kubernetes.io/restartedAt": "2024-04-30T09:12:44Z"},
			"host":        "node-1", "container_name": "web",
			"docker_id":      "4f2e8c9d1a7b3e6f0c5d8a2b9e1f4c7d6a3b8e0f2c5d9a1b4e7f0c3d6a9b2e5f",
			"container_hash": "registry.example/web@sha256:0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0",
		},
	}
	ev, err := AppendEvent(nil, FormatV2, t0, EventTime, rec)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(ev)))
	for i := 0; i < b.N; i++ {
		if _, err := skip(ev); err != nil {
			b.Fatal(err)
		}
	}
}

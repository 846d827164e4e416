package alert

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/keyalert/keyalert/pkg/keyword"
	"github.com/keyalert/keyalert/pkg/stream"
)

// BenchmarkOnApplied measures the ingest hook on a chunk-shaped batch of
// 1,000 entries (16 keywords, 10 a chunk, two minutes). One op is one entry.
func BenchmarkOnApplied(b *testing.B) {
	now := time.Now()
	e := New(Config{Now: func() time.Time { return now }, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	minute := now.Unix() / 60 * 60
	es := make([]stream.Entry, 1000)
	for i := range es {
		chunk := i / 10
		es[i] = stream.Entry{Keyword: keyword.Spec{Text: fmt.Sprintf("keyword-%02d", (chunk+i%10*3)%16)}, Minute: minute - int64(i/600)*60,
			Host: fmt.Sprintf("host-%d", chunk%8)}
	}
	ctx := context.Background()
	b.ReportAllocs()
	for done := 0; done < b.N; done += len(es) {
		e.OnApplied(ctx, es)
	}
}

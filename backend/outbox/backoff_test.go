package outbox

import (
	"testing"
	"time"
)

func TestBackoffGrowsWithJitterWithinBounds(t *testing.T) {
	o := &Outbox{set: Settings{BackoffMin: 100 * time.Millisecond, BackoffMax: time.Second}}
	for attempt, nominal := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 5: time.Second, 40: time.Second} {
		for i := 0; i < 100; i++ {
			d := o.backoff(attempt)
			if d < nominal/2 || d > nominal {
				t.Fatalf("attempt %d: %s outside [%s, %s]", attempt, d, nominal/2, nominal)
			}
		}
	}
}

package backoff

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestNominalDoublesFromMinAndStopsAtMax(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Policy
		want []time.Duration
	}{
		{"zero value", Policy{}, []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, 1600 * time.Millisecond, 3200 * time.Millisecond, 5 * time.Second, 5 * time.Second}},
		{"set bounds", Policy{Min: time.Second, Max: 3 * time.Second}, []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second}},
		{"max below min", Policy{Min: time.Second, Max: time.Millisecond}, []time.Duration{time.Second, time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i, w := range tc.want {
				if got := tc.p.Nominal(i); got != w {
					t.Errorf("Nominal(%d) = %v, want %v", i, got, w)
				}
			}
			if got := tc.p.Nominal(1 << 20); got > tc.p.Nominal(len(tc.want)) {
				t.Errorf("Nominal(huge) = %v, above the cap", got)
			}
		})
	}
}

func TestDelayJittersWithinHalfToFull(t *testing.T) {
	p := Policy{Min: time.Second, Max: time.Minute}
	for attempt := range 8 {
		n := p.Nominal(attempt)
		for range 200 {
			if d := p.Delay(attempt); d < n/2 || d > n {
				t.Fatalf("Delay(%d) = %v, want in [%v, %v]", attempt, d, n/2, n)
			}
		}
	}
	if d := (Policy{Min: time.Second, NoJitter: true}).Delay(2); d != 4*time.Second {
		t.Errorf("NoJitter Delay(2) = %v, want 4s", d)
	}
}

func TestBackoffCountsAndResets(t *testing.T) {
	b := New(Policy{Min: time.Millisecond, Max: time.Second, NoJitter: true})
	if b.Next() != time.Millisecond || b.Next() != 2*time.Millisecond || b.Attempt() != 2 {
		t.Fatalf("after two failures: attempt %d", b.Attempt())
	}
	b.Reset()
	if b.Next() != time.Millisecond {
		t.Fatal("Reset did not start again from Min")
	}
}

func TestWaitReturnsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := New(Policy{Min: time.Hour}).Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait = %v, want context.Canceled", err)
	}
	if time.Since(start) > time.Second {
		t.Fatal("Wait slept through a cancelled context")
	}
}

func TestRetryStopsOnSuccessAndReportsEachFailure(t *testing.T) {
	var seen []int
	calls := 0
	err := Retry(context.Background(), Policy{Min: time.Millisecond, Max: 2 * time.Millisecond}, func(context.Context) error {
		calls++
		if calls < 4 {
			return errors.New("down")
		}
		return nil
	}, func(_ error, attempt int) { seen = append(seen, attempt) })
	if err != nil || calls != 4 || len(seen) != 3 || seen[2] != 3 {
		t.Fatalf("Retry = %v after %d calls, failures seen %v", err, calls, seen)
	}
}

func TestRetryGivesUpWithTheContext(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	err := Retry(ctx, Policy{Min: 5 * time.Millisecond}, func(context.Context) error { return errors.New("down") }, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Retry = %v, want context.DeadlineExceeded", err)
	}
}

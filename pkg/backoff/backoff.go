// Package backoff is keyalert's one retry delay: exponential from a minimum,
// capped at a maximum, with "equal jitter" (half of each delay fixed, half
// random), so replicas retrying the same Redis or receiver spread out but
// never come back sooner than half the nominal delay. Every wait honours its
// context.
package backoff

import (
	"context"
	"math/rand/v2"
	"time"
)

// Defaults of a zero Policy: what a Redis call retried in a loop wants.
const (
	DefaultMin = 100 * time.Millisecond
	DefaultMax = 5 * time.Second
)

// Policy bounds the delays. The zero value is usable (DefaultMin, DefaultMax).
type Policy struct {
	Min time.Duration // first delay; 0: DefaultMin
	Max time.Duration // cap; 0: DefaultMax (raised to Min if below it)
	// NoJitter makes every delay exactly its nominal value (tests, golden
	// figures); leave it off in production.
	NoJitter bool
}

func (p Policy) bounds() (lo, hi time.Duration) {
	lo, hi = p.Min, p.Max
	if lo <= 0 {
		lo = DefaultMin
	}
	if hi <= 0 {
		hi = DefaultMax
	}
	return lo, max(lo, hi)
}

// Nominal is the delay before retry number attempt (0 for the first retry)
// without jitter: Min·2^attempt, capped at Max.
func (p Policy) Nominal(attempt int) time.Duration {
	lo, hi := p.bounds()
	d := lo
	for i := 0; i < attempt && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// Delay is Nominal(attempt) with equal jitter: uniformly in [d/2, d].
func (p Policy) Delay(attempt int) time.Duration {
	d := p.Nominal(attempt)
	if p.NoJitter {
		return d
	}
	return d/2 + rand.N(d/2+1)
}

// Backoff counts consecutive failures of one loop.
type Backoff struct {
	Policy
	attempt int
}

// New starts a loop's count at zero.
func New(p Policy) *Backoff { return &Backoff{Policy: p} }

// Next returns the delay for the failure just seen and counts it.
func (b *Backoff) Next() time.Duration {
	d := b.Delay(b.attempt)
	b.attempt++
	return d
}

// Attempt is the number of failures since the last Reset.
func (b *Backoff) Attempt() int { return b.attempt }

// Reset is called after a success: the next failure waits Min again.
func (b *Backoff) Reset() { b.attempt = 0 }

// Wait sleeps Next() unless ctx ends first; it returns ctx.Err() then.
func (b *Backoff) Wait(ctx context.Context) error { return Sleep(ctx, b.Next()) }

// Sleep waits d or until ctx ends, whichever is first, and returns
// ctx.Err() if ctx ended.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Retry calls f until it returns nil or ctx ends, waiting between calls as p
// says. onErr (may be nil) sees each failure with its 1-based attempt number,
// for logs and metrics. It returns nil on success, else ctx's error.
func Retry(ctx context.Context, p Policy, f func(context.Context) error, onErr func(err error, attempt int)) error {
	b := New(p)
	for {
		err := f(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if onErr != nil {
			onErr(err, b.Attempt()+1)
		}
		if err := b.Wait(ctx); err != nil {
			return err
		}
	}
}

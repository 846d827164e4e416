//go:build race

package flush

// raceEnabled: under the race detector sync.Pool drops items at random, so
// allocation counts through the pool are not meaningful.
const raceEnabled = true

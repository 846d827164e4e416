package flbhost

import (
	"fmt"
	"sync"
	"testing"

	"github.com/keyalert/keyalert/harness/redistest"
)

// TestConcurrentFlushesMatchSequential flushes the same chunks one at a time
// and four at once on separate host threads (Fluent Bit's output workers):
// the counts must be the same, and right.
func TestConcurrentFlushesMatchSequential(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client()
	h := StartForTest(t)
	mustInit(t, h, "c", instanceConfig(rs, "ka:conc", "ERROR,WARN,Exception", "Samples", "5"))
	kws := specs(false, "ERROR", "WARN", "Exception")

	for round := range 3 {
		lines := synthLines(12000, round)
		chunks, _ := split(lines, 3000)
		seq, par := fmt.Sprintf("seq.%d", round), fmt.Sprintf("par.%d", round)
		for _, c := range chunks {
			mustFlush(t, h, "c", seq, c, OK)
		}
		rcs, err := h.FlushConcurrent("c", par, chunks)
		if err != nil {
			t.Fatalf("pflush: %v", err)
		}
		for i, n := range rcs {
			if n != OK {
				t.Errorf("round %d: concurrent flush %d: rc %d", round, i, n)
			}
		}
		entries := readEntries(t, rc, "ka:conc")
		want := truth(kws, base, lines)
		equalTallies(t, seq, tally(t, entries, seq), want)
		equalTallies(t, par, tally(t, entries, par), want)
	}
}

// TestDriverSerialisesConcurrentCallers calls the driver from several
// goroutines at once (the race detector watches the driver's state).
func TestDriverSerialisesConcurrentCallers(t *testing.T) {
	rs := redistest.Start(t)
	rc := rs.Client()
	h := StartForTest(t)
	mustInit(t, h, "d", instanceConfig(rs, "ka:drv", "ERROR"))
	lines := synthLines(4000, 9)
	chunks, _ := split(lines, 500)
	var wg sync.WaitGroup
	errs := make(chan error, len(chunks)*2)
	for i, c := range chunks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var n int
			var err error
			if i%2 == 0 {
				n, err = h.Flush("d", "drv", c)
			} else {
				var rcs []int
				rcs, err = h.FlushConcurrent("d", "drv", [][]byte{c})
				if err == nil {
					n = rcs[0]
				}
			}
			if err == nil && n != OK {
				err = fmt.Errorf("chunk %d: rc %d", i, n)
			}
			if err != nil {
				errs <- err
			}
			if _, err := h.Goroutines(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	equalTallies(t, "drv", tally(t, readEntries(t, rc, "ka:drv"), "drv"), truth(specs(false, "ERROR"), base, lines))
}

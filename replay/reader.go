package replay

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/keyalert/keyalert/pkg/multiline"
)

// recordReader turns log lines into timed records.
type recordReader struct {
	multiline bool // join continuation lines to the record before
	ctr       *counter
	ts        *stampParser
	prev      time.Time // time of the record before; a line without one takes it
	lines     int
	timed     int // records with their own timestamp
}

// readFile reads the log file name ("-": stdin) into records.
func (rd *recordReader) readFile(ctx context.Context, name string, stdin io.Reader) error {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return badInput("log file: %v", err)
		}
		defer f.Close()
		r = f
	}
	br := bufio.NewReaderSize(r, 1<<20)
	var (
		rec   strings.Builder
		recAt time.Time
	)
	emit := func() error {
		if rec.Len() == 0 {
			return nil
		}
		err := rd.ctr.add(recAt, rec.String())
		rec.Reset()
		return err
	}
	for {
		// Looked at once a chunk: cheap, and a large log still stops soon.
		if rd.lines%chunkRecords == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("read %s: %w", name, err)
			}
		}
		line, err := br.ReadString('\n')
		if err != nil && err != io.EOF {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if line == "" && err == io.EOF {
			break
		}
		rd.lines++
		line = strings.TrimRight(line, "\r\n")
		if rd.multiline && rec.Len() > 0 && multiline.Continues(line) {
			rec.WriteByte('\n')
			rec.WriteString(line)
		} else {
			if err := emit(); err != nil {
				return err
			}
			if t, ok := rd.ts.parse(line); ok {
				rd.prev = t
				rd.timed++
			}
			recAt = rd.prev
			if line == "" {
				// An empty line is still a record, as tail sends it.
				if err := rd.ctr.add(recAt, ""); err != nil {
					return err
				}
			}
			rec.WriteString(line)
		}
		if err == io.EOF {
			break
		}
	}
	return emit()
}

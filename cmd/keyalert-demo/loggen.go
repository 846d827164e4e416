package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/keyalert/keyalert/harness/loggen"
)

func loggenCmd(args []string) error {
	fs := flag.NewFlagSet("loggen", flag.ContinueOnError)
	o := loggen.DefaultOptions()
	out := fs.String("o", "-", "file to append to (- for stdout)")
	fs.IntVar(&o.Rate, "rate", o.Rate, "normal lines per second")
	fs.DurationVar(&o.BurstEvery, "burst-every", o.BurstEvery, "time between bursts of exceptions (0 = none)")
	fs.IntVar(&o.BurstLines, "burst-lines", o.BurstLines, "exceptions per burst")
	fs.StringVar(&o.Host, "host", o.Host, "host name written into each line")
	limit := fs.Int("n", 0, "stop after this many lines (0 = run until interrupted)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.Rate <= 0 {
		return fmt.Errorf("-rate %d: must be positive", o.Rate)
	}
	var w io.Writer = os.Stdout
	if *out != "-" {
		f, err := os.OpenFile(*out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		w = f
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	_, err := loggen.Run(ctx, w, o, *limit, time.Second, time.Now)
	return err
}

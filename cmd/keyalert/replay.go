package main

import "errors"

func replayCmd(args []string) error {
	return errors.New("not implemented yet")
}

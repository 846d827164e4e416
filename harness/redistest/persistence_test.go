package redistest

import (
	"context"
	"testing"
)

func TestStartPersistenceConfiguresTheServer(t *testing.T) {
	for _, tc := range []struct {
		name       string
		p          Persistence
		appendonly string
		save       string
	}{
		{"aof", AOF, "yes", ""},
		{"rdb only", RDB, "no", "900 1 60 100"},
		{"volatile", Volatile, "no", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := StartPersistence(t, tc.p).Client()
			ctx := context.Background()
			if got := c.ConfigGet(ctx, "appendonly").Val()["appendonly"]; got != tc.appendonly {
				t.Errorf("appendonly = %q, want %q", got, tc.appendonly)
			}
			if got := c.ConfigGet(ctx, "save").Val()["save"]; got != tc.save {
				t.Errorf("save = %q, want %q", got, tc.save)
			}
		})
	}
}

func TestVolatileServerRestartsEmpty(t *testing.T) {
	s := StartPersistence(t, Volatile)
	ctx := context.Background()
	if err := s.Client().Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	s.Restart()
	if n := s.Client().Exists(ctx, "k").Val(); n != 0 {
		t.Errorf("key survived the restart of a volatile server")
	}
}

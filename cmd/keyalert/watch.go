package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// watchCmd prints, every interval, the last minutes' counts of each keyword
// and any alert that started firing, from keyalertd's API.
func watchCmd(args []string) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	api := fs.String("api", envOr("KEYALERT_API", "http://127.0.0.1:8080"), "keyalertd base URL")
	token := fs.String("token", os.Getenv("KEYALERT_TOKEN"), "API bearer token (env KEYALERT_TOKEN)")
	every := fs.Duration("every", 5*time.Second, "refresh interval")
	minutes := fs.Int("minutes", 5, "minutes of history per line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return errors.New("name at least one keyword")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c := &apiClient{base: strings.TrimRight(*api, "/"), token: *token, http: &http.Client{Timeout: 5 * time.Second}}
	seen := map[string]string{}
	t := time.NewTicker(*every)
	defer t.Stop()
	for {
		now := time.Now().UTC().Truncate(time.Minute)
		from := now.Add(-time.Duration(*minutes-1) * time.Minute)
		var parts []string
		for _, kw := range fs.Args() {
			var res struct {
				Points []struct {
					Minute time.Time `json:"minute"`
					Count  int64     `json:"count"`
				} `json:"points"`
				Total int64 `json:"total"`
			}
			q := url.Values{"keyword": {kw}, "from": {from.Format(time.RFC3339)}, "to": {now.Add(time.Minute).Format(time.RFC3339)}}
			if err := c.get(ctx, "/api/v1/counts?"+q.Encode(), &res); err != nil {
				parts = append(parts, fmt.Sprintf("%s: %v", kw, err))
				continue
			}
			per := map[time.Time]int64{}
			for _, p := range res.Points {
				per[p.Minute.UTC()] = p.Count
			}
			var cells []string
			for m := from; !m.After(now); m = m.Add(time.Minute) {
				cells = append(cells, fmt.Sprintf("%d", per[m]))
			}
			parts = append(parts, fmt.Sprintf("%s [%s] total %d", kw, strings.Join(cells, " "), res.Total))
		}
		fmt.Printf("%s  per minute (oldest→now): %s\n", time.Now().Format("15:04:05"), strings.Join(parts, " | "))

		var alerts struct {
			Alerts []map[string]any `json:"alerts"`
		}
		if err := c.get(ctx, "/api/v1/alerts", &alerts); err == nil {
			for _, a := range alerts.Alerts {
				id, _ := a["id"].(string)
				state, _ := a["state"].(string)
				if seen[id] != state {
					seen[id] = state
					fmt.Printf("%s  ALERT %s %s: rule %q, group %q, count %v\n", time.Now().Format("15:04:05"), id, strings.ToUpper(state), a["rule_name"], a["group"], a["count"])
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

type apiClient struct {
	base, token string
	http        *http.Client
}

func (c *apiClient) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e map[string]any
		json.NewDecoder(resp.Body).Decode(&e)
		return fmt.Errorf("GET %s: %s %v", path, resp.Status, e)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

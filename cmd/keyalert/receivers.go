package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/keyalert/keyalert/backend/receiver"
	"github.com/keyalert/keyalert/backend/rules"
	"github.com/keyalert/keyalert/cmd/keyalert/internal/rulesfile"
)

const receiversUsage = `usage: keyalert receivers [-o json]
       keyalert receivers apply -f receivers.yaml [-dry-run] [-prune]
       keyalert receivers export [-o yaml|json] > receivers.yaml

Named notification targets that rules send to (receivers). apply makes
keyalertd's receivers match the file (YAML or JSON: a list of receivers, or
{receivers: [...]}, each the API's receiver document), identified by name;
-prune deletes the ones the file lacks (keyalertd refuses while a rule
names one).

Secrets: a routing_key, url or secret of the form "${NAME}" is read from the
environment variable NAME. export writes every secret as such a reference,
${KEYALERT_RECEIVER_<NAME>_<FIELD>}. When a referenced variable is unset
apply keeps the secret keyalertd has (a new receiver needs it). keyalertd
shows secrets redacted (all but the last 4 characters), so apply compares
them in that form: a new secret of the same length and last 4 characters as
the old one is not seen as a change.`

func receiversCmd(args []string, stdout, stderr io.Writer) error {
	var res struct {
		List []struct {
			Name       string   `json:"name"`
			Type       string   `json:"type"`
			RoutingKey string   `json:"routing_key"`
			URL        string   `json:"url"`
			Severities []string `json:"severities"`
		} `json:"receivers"`
	}
	return namedCmd(args, "receivers", receiversUsage, stdout, stderr, receiversApply, receiversExport,
		"/api/v1/receivers", &res, func() ([]string, [][]string) {
			rows := make([][]string, len(res.List))
			for i, r := range res.List {
				target := r.URL
				if r.RoutingKey != "" {
					target = "routing key " + r.RoutingKey
				}
				sev := "all"
				if len(r.Severities) > 0 {
					sev = strings.Join(r.Severities, ",")
				}
				rows[i] = []string{r.Name, r.Type, target, sev}
			}
			return []string{"NAME", "TYPE", "TARGET", "SEVERITIES"}, rows
		})
}

func listReceivers(ctx context.Context, c *common, stderr io.Writer) ([]json.RawMessage, error) {
	return listNamed(ctx, c, stderr, "/api/v1/receivers", "receivers")
}

// receiverView is a receiver as the API shows it (secrets redacted),
// without timestamps, as canonical JSON: what apply compares.
func receiverView(doc []byte) (string, error) {
	var m map[string]any
	if err := json.Unmarshal(doc, &m); err != nil {
		return "", err
	}
	delete(m, "created_at")
	delete(m, "updated_at")
	b, err := json.Marshal(m) // maps marshal with sorted keys
	return string(b), err
}

type receiverStep struct {
	op, name string
	fields   []string // what an update changes
	doc      []byte   // sent for create and update
}

func receiversApply(args []string, stdout, stderr io.Writer) error {
	a, err := parseApply(args, "receivers apply", receiversUsage, "receivers", "receiver", "delete the receivers the file does not have", stderr)
	if err != nil {
		return err
	}
	c, file, dry, prune, items := a.c, &a.file, &a.dry, &a.prune, a.items
	ctx := context.Background()
	raws, err := listReceivers(ctx, c, stderr)
	if err != nil {
		return err
	}
	plan, err := planReceivers(*file, items, raws, *prune, os.LookupEnv)
	if err != nil {
		return err
	}
	steps := make([]namedStep, len(plan))
	for i, st := range plan {
		steps[i] = namedStep{op: st.op, name: st.name, detail: ": " + strings.Join(st.fields, ", ")}
	}
	n, apply := printSteps(stdout, steps, *file, "receivers", *dry)
	if !apply {
		return nil
	}
	cl, _ := c.client(stderr)
	done := 0
	for _, st := range plan {
		var err error
		switch st.op {
		case "create":
			_, err = cl.Do(ctx, http.MethodPost, "/api/v1/receivers", json.RawMessage(st.doc))
		case "update":
			_, err = cl.Do(ctx, http.MethodPut, "/api/v1/receivers/"+url.PathEscape(st.name), json.RawMessage(st.doc))
		case "delete":
			_, err = cl.Do(ctx, http.MethodDelete, "/api/v1/receivers/"+url.PathEscape(st.name), nil)
		default:
			continue
		}
		if err != nil {
			return fmt.Errorf("%s receiver %q: %w (%d of %d changes applied before it)", st.op, st.name, err, done, n)
		}
		done++
	}
	fmt.Fprintf(stdout, "%d changes applied\n", n)
	return nil
}

// planReceivers compares the file's receivers with keyalertd's (raws, the
// API's documents): secrets given as "${NAME}" are read with lookup, and
// left as keyalertd has them when unset.
func planReceivers(path string, items []*rulesfile.Item, raws []json.RawMessage, prune bool,
	lookup func(string) (string, bool)) ([]receiverStep, error) {
	have := map[string]map[string]any{}
	var order []string
	for _, raw := range raws {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, fmt.Errorf("decode a stored receiver: %w", err)
		}
		name, _ := m["name"].(string)
		have[name] = m
		order = append(order, name)
	}
	var plan []receiverStep
	var errs []error
	inFile := map[string]int{}
	for _, it := range items {
		var doc map[string]any
		if err := json.Unmarshal(it.Doc, &doc); err != nil {
			errs = append(errs, it.Errorf(path, "", "%v", err))
			continue
		}
		name, _ := doc["name"].(string)
		stored := have[name]
		bad := false
		for _, f := range rulesfile.ReceiverSecretFields {
			v, _ := doc[f].(string)
			ref, ok := rulesfile.Ref(v)
			if !ok {
				continue
			}
			val, set := lookup(ref)
			switch {
			case set:
				doc[f] = val
			case stored != nil && stored[f] != nil:
				doc[f] = stored[f] // redacted: keyalertd keeps what it has
			default:
				errs = append(errs, it.Errorf(path, f, "$%s is not set, and a new receiver needs its %s", ref, f))
				bad = true
			}
		}
		if bad {
			continue
		}
		body, _ := json.Marshal(doc)
		// Checked here so that every error of the file shows before any
		// change. The stored receiver, as the API shows it, stands for the
		// existing one: a secret sent back in its redacted form is kept,
		// as keyalertd keeps it.
		var existing *receiver.Receiver
		if stored != nil {
			str := func(f string) rules.Secret { v, _ := stored[f].(string); return rules.Secret(v) }
			existing = &receiver.Receiver{Name: name, RoutingKey: str("routing_key"), URL: str("url"), Secret: str("secret")}
			existing.Type, _ = stored["type"].(string)
		}
		want, verrs := receiver.Decode(body, existing, 0)
		if verrs.Err() != nil {
			for _, fe := range verrs {
				errs = append(errs, it.Errorf(path, fe.Field, "%s", fe.Message))
			}
			continue
		}
		if line, dup := inFile[want.Name]; dup {
			errs = append(errs, it.Errorf(path, "name", "also the name of the receiver on line %d", line))
			continue
		}
		inFile[want.Name] = it.Line
		if stored == nil {
			plan = append(plan, receiverStep{op: "create", name: want.Name, doc: body})
			continue
		}
		wantView, err := json.Marshal(want)
		if err != nil {
			return nil, err
		}
		var wm map[string]any
		json.Unmarshal(wantView, &wm)
		fields := changedFields(stored, wm)
		op := "same"
		if len(fields) > 0 {
			op = "update"
		}
		plan = append(plan, receiverStep{op: op, name: want.Name, fields: fields, doc: body})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	for _, name := range order {
		if _, ok := inFile[name]; !ok {
			op := "keep"
			if prune {
				op = "delete"
			}
			plan = append(plan, receiverStep{op: op, name: name})
		}
	}
	return plan, nil
}

// changedFields names the top-level fields whose API view differs.
func changedFields(have, want map[string]any) []string {
	var out []string
	keys := map[string]bool{}
	for k := range have {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	for k := range keys {
		if k == "created_at" || k == "updated_at" {
			continue
		}
		a, _ := json.Marshal(have[k])
		b, _ := json.Marshal(want[k])
		if !bytes.Equal(a, b) {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func receiversExport(args []string, stdout, stderr io.Writer) error {
	return exportNamed(args, "receivers export", receiversUsage, "\nSecrets are references to environment variables: set them before applying to a new keyalertd.", stdout, stderr, listReceivers, rulesfile.ExportReceivers)
}

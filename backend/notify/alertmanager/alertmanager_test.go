package alertmanager

import (
	"maps"
	"testing"

	"github.com/keyalert/keyalert/backend/notify"
	"github.com/keyalert/keyalert/backend/rules"
)

// The group's labels become Alertmanager labels next to keyalert's own,
// which win over a group label of the same name.
func TestLabelsCarryTheGroupsLabels(t *testing.T) {
	n := notify.Notification{Rule: notify.Rule{ID: "r1", Name: "k8s", Severity: rules.Error}, Keywords: []string{"b", "a"},
		Host: "node-1", Labels: map[string]string{"namespace": "shop", "app": "web", "severity": "from-a-record"}}
	want := map[string]string{"alertname": "k8s", "rule_id": "r1", "severity": "error", "keyword": "a,b",
		"host": "node-1", "namespace": "shop", "app": "web"}
	if got := Labels(n); !maps.Equal(got, want) {
		t.Errorf("labels %v, want %v", got, want)
	}
}

// Package buildinfo tells which build of keyalert is running: the module
// version and VCS revision Go records in the binary, and the Go release that
// built it.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Info is what the binary knows about its build; fields it does not know
// are "unknown".
type Info struct {
	Version   string // module version, e.g. v1.2.0 or a pseudo-version; "(devel)" for a plain go build
	Revision  string // VCS commit, with "-dirty" when the tree had changes
	GoVersion string // e.g. go1.26.0
}

const unknown = "unknown"

// Read returns the build information of the running binary.
func Read() Info {
	in := Info{Version: unknown, Revision: unknown, GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return in
	}
	if bi.Main.Version != "" {
		in.Version = bi.Main.Version
	}
	if bi.GoVersion != "" {
		in.GoVersion = bi.GoVersion
	}
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if s.Value != "" {
				in.Revision = s.Value
			}
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if modified && in.Revision != unknown {
		in.Revision += "-dirty"
	}
	return in
}

// Version is the module version of the running binary.
func Version() string { return Read().Version }

// Register registers the keyalert_build_info gauge, always 1, labelled with
// version, revision and goversion.
func Register(reg prometheus.Registerer) error {
	in := Read()
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "keyalert_build_info",
		Help: "Build of the running binary: module version, VCS revision and Go version; always 1.",
	}, []string{"version", "revision", "goversion"})
	g.WithLabelValues(in.Version, in.Revision, in.GoVersion).Set(1)
	if err := reg.Register(g); err != nil {
		return fmt.Errorf("register keyalert_build_info: %w", err)
	}
	return nil
}

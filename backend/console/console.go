// Package console is keyalertd's web console: a single page served at /
// from files embedded in the binary, which signs in for a session cookie
// (package session) and then reads and changes everything through the JSON
// API under /api/v1, the single source of truth. No Node toolchain is needed:
// the page is plain JavaScript, and its one library (uPlot, for charts) is
// vendored under assets/vendor with its licence and how it was obtained.
//
// Every answer carries a strict Content-Security-Policy: scripts and styles
// only from this origin, no inline script or style, no frames, forms posting
// only here.
package console

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"sync"
)

//go:embed assets
var assets embed.FS

// CSP is the Content-Security-Policy of every console answer.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

// file is one embedded asset, kept plain and, once first asked for,
// gzipped.
type file struct {
	body []byte
	ext  string
	etag string
	// The content type is looked up on the first request too: the first
	// lookup of package mime reads the system's MIME tables (~10 ms).
	ctypeOnce sync.Once
	ctype     string
	// gz is compressed on the first request that accepts it, not at start:
	// at the best compression the assets take ~50 ms of CPU, which every
	// start paid, console used or not.
	gzOnce sync.Once
	gz     []byte
}

// contentType returns the file's type by its extension, looked up on the
// first call.
func (f *file) contentType() string {
	f.ctypeOnce.Do(func() {
		f.ctype = mime.TypeByExtension(f.ext)
		if f.ctype == "" {
			f.ctype = "application/octet-stream"
		}
	})
	return f.ctype
}

// gzipped returns the body gzipped, compressing it on the first call.
func (f *file) gzipped() []byte {
	f.gzOnce.Do(func() {
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		zw.Write(f.body)
		zw.Close()
		f.gz = gz.Bytes()
	})
	return f.gz
}

// Handler serves the console at / and /assets/, and hands every other
// path to api.
type Handler struct {
	api   http.Handler
	files map[string]*file // by path under assets/
}

// New returns the console in front of api (the /api/v1, health and metrics
// router).
func New(api http.Handler) (*Handler, error) {
	h := &Handler{api: api, files: map[string]*file{}}
	err := fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := assets.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		h.files[strings.TrimPrefix(p, "assets/")] = &file{body: b, ext: path.Ext(p), etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("console assets: %w", err)
	}
	if h.files["index.html"] == nil {
		return nil, fmt.Errorf("console assets: no index.html")
	}
	return h, nil
}

// ServeHTTP serves / (the page), /assets/* (its files), and passes the rest
// to the API.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var name string
	switch {
	case r.URL.Path == "/" || r.URL.Path == "/index.html":
		name = "index.html"
	case strings.HasPrefix(r.URL.Path, "/assets/"):
		name = strings.TrimPrefix(r.URL.Path, "/assets/")
		if name == "index.html" {
			name = ""
		}
	default:
		h.api.ServeHTTP(w, r)
		return
	}
	hd := w.Header()
	hd.Set("Content-Security-Policy", CSP)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("X-Frame-Options", "DENY")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	f := h.files[name]
	if f == nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	hd.Set("Content-Type", f.contentType())
	hd.Set("ETag", f.etag)
	hd.Set("Vary", "Accept-Encoding")
	// The page is revalidated each load (cheap with the ETag) so an upgrade
	// shows at once; assets are revalidated too, as their names carry no hash.
	hd.Set("Cache-Control", "no-cache")
	if r.Header.Get("If-None-Match") == f.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := f.body
	if acceptsGzip(r) {
		hd.Set("Content-Encoding", "gzip")
		body = f.gzipped()
	}
	hd.Set("Content-Length", fmt.Sprint(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(body)
}

func acceptsGzip(r *http.Request) bool {
	for _, p := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, _, _ := strings.Cut(strings.TrimSpace(p), ";")
		if enc == "gzip" {
			return true
		}
	}
	return false
}

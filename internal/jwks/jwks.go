// Package jwks builds the public JWKS document once per key change and
// serves it as precomputed bytes with a strong ETag.
package jwks

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Key is one published public key.
type Key struct {
	KID     string
	Alg     string
	Public  crypto.PublicKey
	Version int // the key version (not published; for observed propagation)
}

// Document is an encoded JWKS and its ETag.
type Document struct {
	Body []byte
	ETag string // strong, quoted
	Keys int
	// MaxVersion is the highest key version the document holds.
	MaxVersion int

	// Header values, built once so that serving allocates nothing.
	etag, length []string
}

// Build encodes keys (public members only) as {"keys":[...]}.
func Build(keys []Key) (*Document, error) {
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	maxVersion := 0
	for _, k := range keys {
		maxVersion = max(maxVersion, k.Version)
		jwk := jose.JSONWebKey{Key: k.Public, KeyID: k.KID, Algorithm: k.Alg, Use: "sig"}
		if !jwk.IsPublic() {
			return nil, fmt.Errorf("jwks: key %s is not a public key", k.KID)
		}
		set.Keys = append(set.Keys, jwk)
	}
	body, err := json.Marshal(set)
	if err != nil {
		return nil, fmt.Errorf("jwks: encode: %w", err)
	}
	sum := sha256.Sum256(body)
	etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:18]) + `"`
	return &Document{Body: body, ETag: etag, Keys: len(keys), MaxVersion: maxVersion, etag: []string{etag}, length: []string{strconv.Itoa(len(body))}}, nil
}

// Handler serves the current Document. Until Set is called it answers 503.
type Handler struct {
	doc          atomic.Pointer[Document]
	kids         atomic.Pointer[string] // the key IDs of doc, to skip rebuilding it
	cacheControl []string
	// Observe, when set, is told the status of each response (200 or 304).
	Observe func(status int)
	// Fetched, when set, is told of each answered fetch and the highest key
	// version of the document it was served: a 304 counts as the document
	// its ETag names; a HEAD, or a 304 to If-None-Match: *, as none (0).
	// It runs on the request path: it must be cheap and never block.
	Fetched func(r *http.Request, maxVersion int)
}

var contentJSON = []string{"application/json"}

// NewHandler returns a Handler whose responses may be cached for maxAge.
func NewHandler(maxAge time.Duration) *Handler {
	return &Handler{cacheControl: []string{"public, max-age=" + strconv.Itoa(int(maxAge.Seconds()))}}
}

// Set publishes a new document.
func (h *Handler) Set(d *Document) { h.doc.Store(d) }

// Publish builds and serves the document of keys unless it already serves
// those very keys (same kids in the same order). It reports whether the
// document changed.
func (h *Handler) Publish(keys []Key) (*Document, bool, error) {
	var ids strings.Builder
	for _, k := range keys {
		ids.WriteString(k.KID + ",")
	}
	id := ids.String()
	if last := h.kids.Load(); last != nil && *last == id {
		return h.doc.Load(), false, nil
	}
	doc, err := Build(keys)
	if err != nil {
		return nil, false, err
	}
	h.Set(doc)
	h.kids.Store(&id)
	return doc, true, nil
}

// Current returns the published document, or nil.
func (h *Handler) Current() *Document { return h.doc.Load() }

// ServeHTTP answers GET and HEAD with the document, or 304 when the
// client's If-None-Match names the current ETag.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d := h.doc.Load()
	hdr := w.Header()
	if d == nil {
		hdr.Set("Content-Type", "application/json")
		hdr.Set("Retry-After", "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte(`{"error":"not_ready","message":"keyd has no keys to publish yet."}`))
		return
	}
	// Canonical keys assigned directly: the values are shared, never modified.
	hdr["Cache-Control"] = h.cacheControl
	hdr["Etag"] = d.etag
	if match, named := etagMatches(r.Header.Get("If-None-Match"), d.ETag); match {
		w.WriteHeader(http.StatusNotModified)
		h.observe(http.StatusNotModified)
		if h.Fetched != nil {
			h.Fetched(r, served(named && r.Method != http.MethodHead, d))
		}
		return
	}
	hdr["Content-Type"] = contentJSON
	hdr["Content-Length"] = d.length
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(d.Body)
	}
	h.observe(http.StatusOK)
	if h.Fetched != nil {
		h.Fetched(r, served(r.Method != http.MethodHead, d))
	}
}

// served is the highest version a fetch counts as holding: the document's,
// when it was served (or named by its ETag).
func served(counts bool, d *Document) int {
	if counts {
		return d.MaxVersion
	}
	return 0
}

func (h *Handler) observe(status int) {
	if h.Observe != nil {
		h.Observe(status)
	}
}

// etagMatches implements If-None-Match's weak comparison (RFC 9110 13.1.2):
// match, and named when the header names etag itself (not only "*").
func etagMatches(header, etag string) (match, named bool) {
	for header != "" {
		var t string
		t, header, _ = strings.Cut(header, ",")
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag {
			return true, true
		}
		match = match || t == "*"
	}
	return match, false
}

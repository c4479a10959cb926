package jwks

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func key(t *testing.T, kid string) Key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return Key{KID: kid, Alg: "ES256", Public: &k.PublicKey}
}

func TestPublishRebuildsOnlyOnChange(t *testing.T) {
	h := NewHandler(5 * time.Minute)
	a, b := key(t, "a"), key(t, "b")
	d1, changed, err := h.Publish([]Key{a})
	if err != nil || !changed {
		t.Fatalf("first publish: changed=%v err=%v", changed, err)
	}
	if d, changed, _ := h.Publish([]Key{a}); changed || d != d1 {
		t.Fatal("same keys rebuilt the document")
	}
	d2, changed, _ := h.Publish([]Key{a, b})
	if !changed || d2.ETag == d1.ETag || h.Current() != d2 {
		t.Fatal("a new key did not publish a new document")
	}
	if _, _, err := h.Publish([]Key{{KID: "x", Alg: "ES256", Public: "not a key"}}); err == nil || h.Current() != d2 {
		t.Fatal("a bad key replaced the served document")
	}
}

func TestIfNoneMatch(t *testing.T) {
	h := NewHandler(time.Minute)
	doc, _, _ := h.Publish([]Key{key(t, "a")})
	for _, tt := range []struct {
		header string
		want   int
	}{
		{"", 200}, {doc.ETag, 304}, {"W/" + doc.ETag, 304}, {`"other", ` + doc.ETag, 304}, {"*", 304}, {`"other"`, 200},
	} {
		r := httptest.NewRequest(http.MethodGet, "/.well-known/jwks.json", nil)
		if tt.header != "" {
			r.Header.Set("If-None-Match", tt.header)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tt.want || (tt.want == 304 && w.Body.Len() != 0) {
			t.Errorf("If-None-Match %q: %d (%d bytes), want %d", tt.header, w.Code, w.Body.Len(), tt.want)
		}
		if cc := w.Header().Get("Cache-Control"); cc != "public, max-age=60" {
			t.Errorf("Cache-Control %q", cc)
		}
	}
	if !strings.HasPrefix(doc.ETag, `"`) {
		t.Errorf("ETag %s is not a strong quoted tag", doc.ETag)
	}
}

// TestFetchedVersions: a GET counts the document served (also as a 304 to
// its ETag); a HEAD never counts a key version, whatever its If-None-Match
// (the recorder then records nothing: such a fetch received no key set).
func TestFetchedVersions(t *testing.T) {
	h := NewHandler(time.Minute)
	k := key(t, "a")
	k.Version = 3
	d, _, err := h.Publish([]Key{k})
	if err != nil {
		t.Fatal(err)
	}
	var got int
	h.Fetched = func(_ *http.Request, v int) { got = v }
	for _, tt := range []struct {
		method, inm string
		want        int
	}{
		{http.MethodGet, "", 3},
		{http.MethodGet, d.ETag, 3},
		{http.MethodGet, "*", 0},
		{http.MethodHead, "", 0},
		{http.MethodHead, d.ETag, 0},
		{http.MethodHead, "*", 0},
	} {
		got = -1
		r := httptest.NewRequest(tt.method, "/.well-known/jwks.json", nil)
		if tt.inm != "" {
			r.Header.Set("If-None-Match", tt.inm)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		if got != tt.want {
			t.Errorf("%s If-None-Match %q: version %d recorded, want %d", tt.method, tt.inm, got, tt.want)
		}
	}
}

// Command floor is the reference HTTP signer of the benchmarks: the least a
// JWT signing service can do per request. It decodes {"claims": {...}}, adds
// iat, exp and jti (so its tokens are the same size as keyd's), signs with
// go-jose v4 and a key generated at start, and answers {"token": "..."}.
// No authentication, no token policy, no logging, no metrics.
//
// With --jwks FILE it also serves that file's bytes at GET
// /.well-known/jwks.json with keyd's headers: plain net/http, the ceiling of
// any Go server on the machine, to compare with nginx.
//
//	floor --listen 127.0.0.1:9000 --algorithm ES256 [--jwks FILE]
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/go-jose/go-jose/v4"
)

const maxBody = 64 << 10

func main() {
	listen := flag.String("listen", "127.0.0.1:9000", "address to listen on")
	algName := flag.String("algorithm", "ES256", "ES256, RS256 or RS512")
	jwksFile := flag.String("jwks", "", "serve this file at GET /.well-known/jwks.json")
	flag.Parse()

	alg := jose.SignatureAlgorithm(*algName)
	key, err := generate(alg)
	if err != nil {
		log.Fatal(err)
	}
	tp, err := (&jose.JSONWebKey{Key: key.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		log.Fatal(err)
	}
	opts := (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", base64.RawURLEncoding.EncodeToString(tp))
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	if *jwksFile != "" {
		doc, err := os.ReadFile(*jwksFile)
		if err != nil {
			log.Fatal(err)
		}
		sum := sha256.Sum256(doc)
		etag := `"` + base64.RawURLEncoding.EncodeToString(sum[:]) + `"`
		length := strconv.Itoa(len(doc))
		mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
			h := w.Header()
			h.Set("Cache-Control", "public, max-age=300")
			h.Set("ETag", etag)
			h.Set("Content-Type", "application/json")
			h.Set("Content-Length", length)
			w.Write(doc)
		})
	}
	mux.HandleFunc("POST /v1/sign", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Claims map[string]any `json:"claims"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, maxBody)).Decode(&req); err != nil || req.Claims == nil {
			http.Error(w, `{"error":"bad_body"}`, http.StatusBadRequest)
			return
		}
		now := time.Now().Unix()
		var jti [16]byte
		rand.Read(jti[:])
		req.Claims["iat"] = now
		req.Claims["exp"] = now + 3600
		req.Claims["jti"] = base64.RawURLEncoding.EncodeToString(jti[:])
		payload, err := json.Marshal(req.Claims)
		if err != nil {
			http.Error(w, `{"error":"encode"}`, http.StatusInternalServerError)
			return
		}
		jws, err := signer.Sign(payload)
		if err != nil {
			http.Error(w, `{"error":"sign"}`, http.StatusInternalServerError)
			return
		}
		token, err := jws.CompactSerialize()
		if err != nil {
			http.Error(w, `{"error":"serialize"}`, http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"token": token})
	})

	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(os.Stderr, "floor: %s on %s\n", alg, *listen)
	log.Fatal(srv.ListenAndServe())
}

func generate(alg jose.SignatureAlgorithm) (crypto.Signer, error) {
	switch alg {
	case jose.ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.RS256, jose.RS512:
		return rsa.GenerateKey(rand.Reader, 2048)
	}
	return nil, fmt.Errorf("floor: unsupported algorithm %q", alg)
}

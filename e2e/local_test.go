package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/testkeyd"
)

var localTokens = []string{"KEYD_SIGNER_TOKEN=e2e-signer-token-0123456789abcdef0123", "KEYD_ADMIN_TOKEN=e2e-admin-token-0123456789abcdef0123", "KEYD_AUDITOR_TOKEN=e2e-auditor-token-0123456789abcdef0123"}

// TestLocalAuditTrail: rotations, bootstrap and an emergency appear in the
// local trail, `keyd audit verify --file` accepts it, and an edit is caught.
func TestLocalAuditTrail(t *testing.T) {
	dir := t.TempDir()
	k := startKeyd(t, localTokens, "--data-dir", dir)
	ctx := context.Background()
	for _, body := range []map[string]any{{"reason": "monthly drill"}, {"emergency": true, "reason": "laptop stolen"}} {
		if _, err := call(ctx, "POST", k.URL+"/v1/rotate", "e2e-admin-token-0123456789abcdef0123", body, nil); err != nil {
			t.Fatal(err)
		}
	}
	var trail struct {
		Events []struct {
			Seq          int64
			Type, Reason string
			Actor        string
		}
		ChainValid bool `json:"chain_valid"`
	}
	if _, err := call(ctx, "GET", k.URL+"/v1/audit?since=1", "e2e-auditor-token-0123456789abcdef0123", nil, &trail); err != nil {
		t.Fatal(err)
	}
	types := map[string]int{}
	for _, e := range trail.Events {
		types[e.Type]++
		if e.Seq <= 1 {
			t.Errorf("since=1 returned seq %d", e.Seq)
		}
	}
	if !trail.ChainValid || types["created"] != 1 || types["emergency"] != 1 || types["destroyed"] != 2 {
		t.Fatalf("trail: valid=%v types=%v", trail.ChainValid, types)
	}
	log := filepath.Join(dir, "audit.log")
	verify := func() (string, error) {
		out, err := exec.Command(keydBin, "audit", "verify", "--file", log).CombinedOutput()
		return string(out), err
	}
	if out, err := verify(); err != nil {
		t.Fatalf("verify intact log: %v\n%s", err, out)
	}
	raw, _ := os.ReadFile(log)
	edited := bytes.Replace(raw, []byte("laptop stolen"), []byte("routine work!"), 1)
	if err := os.WriteFile(log, edited, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := verify(); err == nil || !strings.Contains(out, "edited") {
		t.Fatalf("verify edited log: %v\n%s", err, out)
	}
}

// TestTLS: with --tls-cert and --tls-key keyd serves HTTPS only.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certPEM, certFile, keyFile := selfSigned(t, dir)
	addr := testkeyd.FreeAddr(t)
	cmd := exec.Command(keydBin, "serve", "--listen", addr, "--data-dir", dir, "--tls-cert", certFile, "--tls-key", keyFile)
	cmd.Env = append(os.Environ(), localTokens...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Signal(os.Interrupt); cmd.Wait() }()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	var resp *http.Response
	var err error
	waitUntil(t, 10*time.Second, "HTTPS JWKS", func() bool {
		resp, err = client.Get("https://" + addr + "/.well-known/jwks.json")
		return err == nil
	})
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("HTTPS JWKS: %s", resp.Status)
	}
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP answered although TLS is configured")
		}
	}
}

func selfSigned(t *testing.T, dir string) (certPEM []byte, certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keyd test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return certPEM, certFile, keyFile
}

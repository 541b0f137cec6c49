package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/keyspend/keyspend_exporter/internal/store"
)

// writeWebConfig writes a self-signed certificate and a web-config file
// that turns on TLS and basic auth for user "prometheus".
func writeWebConfig(t *testing.T, password string) (path string, pool *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("cert.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	write("key.pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	write("web.yml", []byte("tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n"+
		"basic_auth_users:\n  prometheus: "+string(hash)+"\n"))

	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return filepath.Join(dir, "web.yml"), pool
}

// TestTLSAndBasicAuth serves through a web-config file and talks to it with
// a real TLS client: plain HTTP is refused, a wrong password gets 401, the
// right one gets the metrics.
func TestTLSAndBasicAuth(t *testing.T) {
	cfg := testConfig(t)
	cfg.LiteLLMURL = "http://127.0.0.1:1"
	webConfig, pool := writeWebConfig(t, "s3cret-pass")
	cfg.WebConfigFile = webConfig
	app := startApp(t, cfg, nil)
	base := strings.Replace(app.base, "http://", "https://", 1)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	get := func(user, pass string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		var resp *http.Response
		var err error
		for i := 0; i < 50; i++ {
			if resp, err = client.Do(req); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}

	if code, _ := get("", ""); code != http.StatusUnauthorized {
		t.Errorf("no credentials: status %d, want 401", code)
	}
	if code, _ := get("prometheus", "wrong"); code != http.StatusUnauthorized {
		t.Errorf("wrong password: status %d, want 401", code)
	}
	code, body := get("prometheus", "s3cret-pass")
	if code != http.StatusOK || !strings.Contains(body, "keyspend_store_up") {
		t.Errorf("right password: status %d, body has keyspend_store_up: %v", code, strings.Contains(body, "keyspend_store_up"))
	}

	resp, err := http.Get(app.base + "/metrics")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("plain HTTP got the metrics from a TLS endpoint")
		}
	}
}

func TestBadWebConfigStopsStart(t *testing.T) {
	cfg := testConfig(t)
	path := filepath.Join(t.TempDir(), "web.yml")
	if err := os.WriteFile(path, []byte("tls_server_config:\n  cert_file: missing.pem\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.WebConfigFile = path
	_, err := newApp(cfg, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "KEYSPEND_WEB_CONFIG_FILE: ") {
		t.Errorf("err = %v, want one naming KEYSPEND_WEB_CONFIG_FILE", err)
	}
}

// TestHostileKeyIDsAreEscaped imports keys whose ids carry HTML and bytes
// that are not UTF-8: the status page escapes them and /metrics stays
// valid.
func TestHostileKeyIDsAreEscaped(t *testing.T) {
	cfg := testConfig(t)
	cfg.LiteLLMURL = "http://127.0.0.1:1"
	app := startApp(t, cfg, func(a *app) {
		_, _, err := a.store.ImportKeys(context.Background(), []store.KeyImport{
			{ID: `<script>alert("x")</script>`, Provider: "litellm", Secret: "s1"},
			{ID: "bad-\xff\xfe-utf8", Provider: "litellm", Secret: "s2"},
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	metrics := app.waitMetrics(t, 20*time.Second, `keyspend_last_cycle_keys 2`)
	if !strings.Contains(metrics, `key="<script>alert(\"x\")</script>"`) {
		t.Errorf("/metrics lacks the escaped HTML key id:\n%s", metrics)
	}
	if !strings.Contains(metrics, "key=\"bad-\uFFFD\uFFFD-utf8\"") {
		t.Errorf("/metrics lacks the key with invalid UTF-8 shown with replacement characters:\n%s", metrics)
	}

	_, page := app.get(t, "/")
	if strings.Contains(page, "<script>alert") {
		t.Error("status page shows a key id's HTML unescaped")
	}
	if !strings.Contains(page, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
		t.Error("status page does not show the escaped key id")
	}
}

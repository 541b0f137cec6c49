package rotator_test

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
)

// Every secret the tests create and every log line a rotator writes are
// kept for the whole test binary, so the final check can prove that no
// secret, nor any 8-character piece of one, reached any log.
var (
	everyMu      sync.Mutex
	everySecret  []string
	everyLogBufs []*logBuffer
)

// TestMain runs the tests, then searches every captured log for every
// secret of the file: a leak of one test's secret into another test's
// logs would escape the per-test check.
func TestMain(m *testing.M) {
	if os.Getenv(childURIEnv) != "" {
		os.Exit(runRotationChild())
	}
	code := m.Run()
	if code == 0 {
		if leak := findLeak(); leak != "" {
			fmt.Fprintln(os.Stderr, "FAIL: secret in captured logs:", leak)
			code = 1
		}
	}
	os.Exit(code)
}

// newSecret returns a fresh random secret and remembers it for the leak
// check.
func newSecret(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	s := prefix + hex.EncodeToString(b)
	everyMu.Lock()
	everySecret = append(everySecret, s)
	everyMu.Unlock()
	return s
}

// logBuffer is an io.Writer safe for the concurrent handlers of many
// goroutines, holding what a test's rotators logged.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the logged lines that contain every one of parts.
func (b *logBuffer) lines(parts ...string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		if l != "" && containsAll(l, parts) {
			out = append(out, l)
		}
	}
	return out
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// newLogger returns a logger writing text lines at debug level into a
// buffer. At the end of the test the buffer is searched for every secret
// created so far.
func newLogger(t testing.TB) (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	everyMu.Lock()
	everyLogBufs = append(everyLogBufs, b)
	everyMu.Unlock()
	t.Cleanup(func() {
		if leak := leakIn(b.String()); leak != "" {
			t.Errorf("secret in the logs: %s", leak)
		}
	})
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug})), b
}

func findLeak() string {
	everyMu.Lock()
	bufs := append([]*logBuffer(nil), everyLogBufs...)
	everyMu.Unlock()
	for _, b := range bufs {
		if leak := leakIn(b.String()); leak != "" {
			return leak
		}
	}
	return ""
}

// leakIn names the first secret with an 8-character piece in text,
// showing only the piece's position, never the secret.
func leakIn(text string) string {
	everyMu.Lock()
	secrets := append([]string(nil), everySecret...)
	everyMu.Unlock()
	pieces := make(map[string]bool, len(text))
	for j := 0; j+8 <= len(text); j++ {
		pieces[text[j:j+8]] = true
	}
	for i, s := range secrets {
		for j := 0; j+8 <= len(s); j++ {
			if pieces[s[j:j+8]] {
				return fmt.Sprintf("secret #%d, piece at offset %d", i, j)
			}
		}
	}
	return ""
}

func TestLeakCheckFindsAPieceOfASecret(t *testing.T) {
	s := newSecret(t, "sk-")
	if leakIn("msg=x key=k1") != "" {
		t.Fatal("leak found in a line without any secret")
	}
	if leakIn("err=\"bad key "+s[10:18]+"\"") == "" {
		t.Fatal("an 8-character piece of a secret was not found")
	}
}

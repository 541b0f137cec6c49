package store_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keyspend/keyspend_exporter/internal/store"
)

// The embedded store has no authentication, so it listens on a Unix socket
// in a directory only this user can enter, never on a TCP port.
func TestEmbeddedListensOnAPrivateSocket(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	emb, err := store.StartEmbedded(t.TempDir(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Close()

	uri := emb.URI()
	if !strings.HasPrefix(uri, "mongodb://%2F") || !strings.HasSuffix(uri, ".sock/") {
		t.Fatalf("URI %q is not a Unix socket", uri)
	}
	sock := strings.NewReplacer("%2F", "/").Replace(strings.TrimSuffix(strings.TrimPrefix(uri, "mongodb://"), "/"))
	info, err := os.Stat(filepath.Dir(sock))
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o700 {
		t.Errorf("socket directory mode %o, want 700", perm)
	}
}

// A second process on the same data directory is refused with one line.
func TestEmbeddedDataDirectoryIsLocked(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir := t.TempDir()
	first, err := store.StartEmbedded(dir, quiet)
	if err != nil {
		t.Fatal(err)
	}
	_, err = store.StartEmbedded(dir, quiet)
	if err == nil || !strings.Contains(err.Error(), "is in use by another process") {
		t.Errorf("second start on one directory: err = %v, want it refused", err)
	}

	first.Close()
	again, err := store.StartEmbedded(dir, quiet)
	if err != nil {
		t.Fatalf("start after the first closed: %v", err)
	}
	again.Close()
}

// Package storetest gives tests a real store: an embedded FerretDB server
// started once per test binary, and a fresh database for each test.
package storetest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/keyspend/keyspend_exporter/internal/store"
)

var (
	once     sync.Once
	server   *store.Embedded
	startErr error
	counter  atomic.Int64
)

// Server returns the shared embedded server, starting it on first use. Its
// data lives in a temporary directory removed with the test binary's files.
func Server(t testing.TB) *store.Embedded {
	t.Helper()
	once.Do(func() {
		dir, err := os.MkdirTemp("", "keyspend-storetest-")
		if err != nil {
			startErr = err
			return
		}
		server, startErr = store.StartEmbedded(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	})
	if startErr != nil {
		t.Fatalf("start embedded store: %v", startErr)
	}
	return server
}

// Names returns collection names in a database of the test's own.
func Names(t testing.TB) store.Names {
	n := store.DefaultNames
	// Database names allow few characters; keep letters, digits and _.
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, t.Name())
	if len(name) > 40 {
		name = name[:40]
	}
	n.Database = fmt.Sprintf("t%d_%s", counter.Add(1), name)
	return n
}

// New opens a store on a fresh database of the shared server. The store is
// closed when the test ends.
func New(t testing.TB) *store.Store {
	t.Helper()
	return Open(t, Server(t).URI(), Names(t))
}

// Open connects a further client to an existing database, as a second
// replica or a restarted process would.
func Open(t testing.TB, uri string, names store.Names) *store.Store {
	t.Helper()
	s, err := store.Open(uri, names, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	if err := s.EnsureIndexes(context.Background()); err != nil {
		t.Fatalf("ensure indexes: %v", err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

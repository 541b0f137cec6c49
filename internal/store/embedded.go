package store

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// Embedded is a FerretDB server (SQLite backend) running inside this
// process, so the exporter works with no database to install.
type Embedded struct {
	uri    string
	cancel context.CancelFunc
	done   chan struct{}
}

// StartEmbedded runs FerretDB on a free loopback port with its data in dir.
// Its own logs are kept to errors: they are about the wire protocol, not
// about keys, and would drown the exporter's lines.
func StartEmbedded(dir string, logger *slog.Logger) (*Embedded, error) {
	return StartEmbeddedOn(dir, "127.0.0.1:0", logger)
}

// StartEmbeddedOn is StartEmbedded on a given address, so a restarted server
// can take the port of the one before and clients reconnect to it.
func StartEmbeddedOn(dir, addr string, logger *slog.Logger) (*Embedded, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("embedded store directory %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("embedded store directory: %w", err)
	}

	quiet := slog.New(logger.Handler().WithGroup("ferretdb"))
	quiet = slog.New(levelFloor{quiet.Handler(), slog.LevelError})
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: addr},
		Handler:   "sqlite",
		SQLiteURL: "file:" + abs + "/",
		Logger:    quiet,
	})
	if err != nil {
		return nil, fmt.Errorf("start embedded store: %w", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	e := &Embedded{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(e.done)
		_ = f.Run(ctx)
	}()

	// MongoDBURI blocks until the listener is bound, which Run does.
	e.uri = f.MongoDBURI()
	if err := waitListening(e.uri); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// waitListening gives the listener a moment to accept connections.
func waitListening(uri string) error {
	host := uri[len("mongodb://"):]
	host = host[:len(host)-1]
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", host, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("embedded store did not start listening: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URI is the mongodb:// address of the embedded server.
func (e *Embedded) URI() string { return e.uri }

// Close stops the server and waits until its files are closed.
func (e *Embedded) Close() {
	e.cancel()
	<-e.done
}

// levelFloor drops records below a level.
type levelFloor struct {
	slog.Handler
	min slog.Level
}

func (h levelFloor) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.min
}

func (h levelFloor) WithAttrs(as []slog.Attr) slog.Handler {
	return levelFloor{h.Handler.WithAttrs(as), h.min}
}

func (h levelFloor) WithGroup(name string) slog.Handler {
	return levelFloor{h.Handler.WithGroup(name), h.min}
}

package store

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
)

// Embedded is a FerretDB server (SQLite backend) running inside this
// process, so the exporter works with no database to install.
type Embedded struct {
	uri    string
	cancel context.CancelFunc
	done   chan struct{}
	lock   *os.File // held on the data directory while the server runs
	sock   string   // private directory of the Unix socket, if any
}

// StartEmbedded runs FerretDB with its data in dir, listening on a Unix
// socket in a directory only this user can enter. A TCP port on loopback
// would let any local process read every secret: FerretDB has no
// authentication here. Its own logs are kept to errors: they are about the
// wire protocol, not about keys, and would drown the exporter's lines.
func StartEmbedded(dir string, logger *slog.Logger) (*Embedded, error) {
	sock, err := os.MkdirTemp("", "keyspend-store-")
	if err != nil {
		return nil, fmt.Errorf("embedded store socket directory: %w", err)
	}
	e, err := start(dir, ferretdb.ListenerConfig{Unix: filepath.Join(sock, "ferretdb.sock")}, logger)
	if err != nil {
		os.RemoveAll(sock)
		return nil, err
	}
	e.sock = sock
	// The driver takes a host ending in .sock, percent-encoded, as a socket.
	e.uri = "mongodb://" + url.PathEscape(filepath.Join(sock, "ferretdb.sock")) + "/"
	return e, nil
}

// StartEmbeddedOn runs the embedded store on a TCP address, so a restarted
// server can take the port of the one before and clients reconnect to it.
// Tests use it to take the store away and bring it back.
func StartEmbeddedOn(dir, addr string, logger *slog.Logger) (*Embedded, error) {
	e, err := start(dir, ferretdb.ListenerConfig{TCP: addr}, logger)
	if err != nil {
		return nil, err
	}
	return e, nil
}

func start(dir string, listener ferretdb.ListenerConfig, logger *slog.Logger) (*Embedded, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("embedded store directory %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("embedded store directory: %w", err)
	}
	lock, err := lockDir(abs)
	if err != nil {
		return nil, err
	}

	quiet := slog.New(levelFloor{logger.Handler().WithGroup("ferretdb"), slog.LevelError})
	f, err := ferretdb.New(&ferretdb.Config{
		Listener: listener, Handler: "sqlite", SQLiteURL: "file:" + abs + "/", Logger: quiet,
	})
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("start embedded store: %w", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	e := &Embedded{cancel: cancel, done: make(chan struct{}), lock: lock}
	go func() {
		defer close(e.done)
		_ = f.Run(ctx)
	}()

	// MongoDBURI blocks until the listener is bound, which Run does.
	e.uri = f.MongoDBURI()
	network, addr := "tcp", listener.TCP
	if listener.Unix != "" {
		network, addr = "unix", listener.Unix
	} else {
		addr = e.uri[len("mongodb://") : len(e.uri)-1]
	}
	if err := waitListening(network, addr); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

// lockDir takes an exclusive lock on the data directory: two processes on
// one SQLite directory would each run their own FerretDB over it.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "keyspend.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("embedded store lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("embedded store directory %s is in use by another process", dir)
	}
	return f, nil
}

// waitListening gives the listener a moment to accept connections.
func waitListening(network, addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout(network, addr, time.Second)
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

// Close stops the server, waits until its files are closed and releases
// the data directory.
func (e *Embedded) Close() {
	e.cancel()
	<-e.done
	e.lock.Close()
	if e.sock != "" {
		os.RemoveAll(e.sock)
	}
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

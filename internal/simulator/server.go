package simulator

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// maxStreams is the HTTP/2 concurrent stream limit the server advertises.
// The default of 250 would queue a cycle of 10,000 parallel checks sharing
// one connection.
const maxStreams = 100_000

// Start serves the simulator on addr, "127.0.0.1:0" when empty, and returns
// its base URL, e.g. "http://127.0.0.1:41234". The port speaks HTTP/1.1 and
// h2c with prior knowledge.
func (s *Simulator) Start(addr string) (string, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}

	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	if s.srv != nil {
		return "", errors.New("start simulator: already started")
	}
	if s.isClosed() {
		return "", errors.New("start simulator: closed")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("start simulator: %w", err)
	}

	s.srv, s.serveErr = s.newServer(), make(chan error, 1)
	go func() { s.serveErr <- s.srv.Serve(ln) }()
	return "http://" + ln.Addr().String(), nil
}

// newServer is an HTTP server for both protocols on one port.
func (s *Simulator) newServer() *http.Server {
	protocols := new(http.Protocols)
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)

	return &http.Server{
		Handler:           s.Handler(),
		Protocols:         protocols,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: maxStreams},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ConnState: func(_ net.Conn, state http.ConnState) {
			if state == http.StateNew {
				s.connections.Add(1)
			}
		},
	}
}

// Close stops the server, drops its connections and ends every request
// still held by latency or a hang. A Simulator cannot be started again.
func (s *Simulator) Close() error {
	s.closeOnce.Do(func() { close(s.done) })

	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	if s.srv == nil {
		return nil
	}
	if err := s.srv.Close(); err != nil {
		return fmt.Errorf("close simulator: %w", err)
	}
	s.srv = nil
	if err := <-s.serveErr; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("simulator server: %w", err)
	}
	return nil
}

// isClosed reports whether Close has been called.
func (s *Simulator) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

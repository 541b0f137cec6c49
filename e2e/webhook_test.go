//go:build e2e

package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// notification is the part of Alertmanager's webhook payload the test
// reads.
type notification struct {
	Receiver string `json:"receiver"`
	Status   string `json:"status"`
	Alerts   []struct {
		Status string            `json:"status"`
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
	raw string
}

// webhook stands in for the receiver the shipped Alertmanager config points
// at: it keeps every notification posted to it.
type webhook struct {
	srv *httptest.Server

	mu   sync.Mutex
	got  []notification
	errs []string
}

func startWebhook(t *testing.T) *webhook {
	t.Helper()
	w := &webhook{}
	w.srv = httptest.NewServer(http.HandlerFunc(w.serve))
	t.Cleanup(w.srv.Close)
	return w
}

func (w *webhook) serve(rw http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var n notification
	if err == nil {
		err = json.Unmarshal(body, &n)
	}
	n.raw = string(body)

	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.errs = append(w.errs, r.URL.Path+": "+err.Error())
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	if r.URL.Path != "/keyspend" {
		w.errs = append(w.errs, "notification posted to "+r.URL.Path)
	}
	w.got = append(w.got, n)
}

// notifications returns what Alertmanager posted so far.
func (w *webhook) notifications() []notification {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]notification(nil), w.got...)
}

// problems returns the posts the receiver could not take.
func (w *webhook) problems() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.errs...)
}

// firing returns the first notification of a firing alert named name.
func (w *webhook) firing(name string) (notification, bool) {
	for _, n := range w.notifications() {
		for _, a := range n.Alerts {
			if a.Status == "firing" && a.Labels["alertname"] == name {
				return n, true
			}
		}
	}
	return notification{}, false
}

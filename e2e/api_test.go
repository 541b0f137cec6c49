//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// client reads the HTTP APIs; the timeout bounds a hung server, it asserts
// no speed.
var client = &http.Client{Timeout: 10 * time.Second}

// getJSON fetches u and decodes its JSON body into v.
func getJSON(u string, v any) error {
	resp, err := client.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s: %s", u, resp.Status, body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decode %s: %w", u, err)
	}
	return nil
}

// promAPI calls Prometheus' HTTP API and decodes the data of a successful
// answer into data.
func promAPI(base, path string, params url.Values, data any) error {
	var env struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := getJSON(base+path+"?"+params.Encode(), &env); err != nil {
		return err
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: status %q: %s", path, env.Status, env.Error)
	}
	if err := json.Unmarshal(env.Data, data); err != nil {
		return fmt.Errorf("decode %s data: %w", path, err)
	}
	return nil
}

// target is one scrape target of /api/v1/targets.
type target struct {
	Labels    map[string]string `json:"labels"`
	Health    string            `json:"health"`
	LastError string            `json:"lastError"`
}

func targets(base string) ([]target, error) {
	var data struct {
		Active []target `json:"activeTargets"`
	}
	err := promAPI(base, "/api/v1/targets", url.Values{"state": {"active"}}, &data)
	return data.Active, err
}

// sample is one element of an instant vector.
type sample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query runs an instant query. A scalar answer is returned as one sample.
func query(base, q string) ([]sample, error) {
	var data struct {
		Type   string          `json:"resultType"`
		Result json.RawMessage `json:"result"`
	}
	if err := promAPI(base, "/api/v1/query", url.Values{"query": {q}}, &data); err != nil {
		return nil, err
	}
	if data.Type != "vector" {
		var s sample
		err := json.Unmarshal(data.Result, &s.Value)
		return []sample{s}, err
	}
	var v []sample
	err := json.Unmarshal(data.Result, &v)
	return v, err
}

// promAlert is one alert of Prometheus' /api/v1/alerts.
type promAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
	ActiveAt    time.Time         `json:"activeAt"`
	Value       string            `json:"value"`
}

func promAlerts(base string) ([]promAlert, error) {
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	err := promAPI(base, "/api/v1/alerts", nil, &data)
	return data.Alerts, err
}

// amAlert is one alert of Alertmanager's /api/v2/alerts.
type amAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	Status      struct {
		State       string   `json:"state"`
		InhibitedBy []string `json:"inhibitedBy"`
	} `json:"status"`
	Receivers []receiver `json:"receivers"`
}

// receiver is a receiver an Alertmanager route sends an alert to.
type receiver struct {
	Name string `json:"name"`
}

// amAlerts lists the alerts Alertmanager holds, inhibited and silenced
// ones included, that match every filter (matchers such as
// alertname="BackupPoolEmpty").
func amAlerts(base string, filters ...string) ([]amAlert, error) {
	var alerts []amAlert
	err := getJSON(base+"/api/v2/alerts?"+url.Values{"filter": filters}.Encode(), &alerts)
	return alerts, err
}

// ready reports whether a Prometheus or Alertmanager answers /-/ready.
func ready(base string) bool {
	resp, err := client.Get(base + "/-/ready")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

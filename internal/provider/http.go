package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
)

const (
	// maxBodyBytes is the most of a body a check keeps. Spend answers are a
	// few hundred bytes; anything near a mebibyte is not one.
	maxBodyBytes = 1 << 20
	// maxDrainBytes is how much more is read and thrown away so a
	// connection can be reused. Past it the connection is closed instead,
	// so a huge body costs neither memory nor time.
	maxDrainBytes = 4 << 20
)

// userAgent names the exporter to the upstream, for its access logs.
const userAgent = "keyspend_exporter"

// errBodyTooLarge is the cause of a bad_response to an oversized body.
var errBodyTooLarge = errors.New("body larger than 1 MiB")

// parser turns one upstream answer into a Result. Parsers do no I/O, so
// they can be tested and fuzzed on bytes alone.
type parser func(status int, header http.Header, body []byte, secret string) Result

// response is what a check keeps of an upstream answer.
type response struct {
	status int
	header http.Header
	body   []byte
}

// endpoint joins a base URL, with or without its trailing slash, and a path.
func endpoint(baseURL, path string) string {
	return strings.TrimRight(baseURL, "/") + "/" + path
}

// check asks url about the key and classifies the answer with parse.
func check(ctx context.Context, client *http.Client, url, secret string, parse parser) Result {
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := get(ctx, client, url, secret)
	if err != nil {
		return transportFailure(ctx, err, secret)
	}
	return parse(resp.status, resp.header, resp.body, secret)
}

// get sends the request and reads at most maxBodyBytes of the answer. The
// body is always drained, up to a bound, and closed.
func get(ctx context.Context, client *http.Client, url, secret string) (response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return response{}, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+secret)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", userAgent)

	resp, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer func() {
		_, _ = io.CopyN(io.Discard, resp.Body, maxDrainBytes)
		_ = resp.Body.Close()
	}()

	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes+1))
	if err == nil && len(body) > maxBodyBytes {
		err = errBodyTooLarge
	}
	if err != nil {
		return response{}, fmt.Errorf("read body of %d response: %w", resp.StatusCode, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// transportFailure classifies a request that got no complete answer.
//
// A body cut off mid-way with a declared length, or mid-chunk, is a network
// failure: the connection broke, the upstream did not answer badly. A body
// with no declared length ends when the connection closes, so a cut there
// cannot be told from a short answer and lands as bad_response when the
// parser finds the JSON truncated.
func transportFailure(ctx context.Context, err error, secret string) Result {
	var netErr net.Error
	switch {
	case errors.Is(err, errBodyTooLarge):
		return failure(OutcomeBadResponse, secret, errBodyTooLarge, "%v", err)
	case ctx.Err() != nil:
		// A canceled check counts as timed out: it ended before the
		// upstream answered, whoever gave up.
		return failure(OutcomeTimeout, secret, ctx.Err(), "%v", err)
	case errors.Is(err, context.DeadlineExceeded):
		return failure(OutcomeTimeout, secret, context.DeadlineExceeded, "%v", err)
	case errors.As(err, &netErr) && netErr.Timeout():
		return failure(OutcomeTimeout, secret, nil, "%v", err)
	}
	return failure(OutcomeNetwork, secret, nil, "%v", err)
}

// checkError is a Result's Err. Its text is redacted; its cause, kept for
// errors.Is, is a sentinel and never carries upstream text.
type checkError struct {
	text  string
	cause error
}

// Error returns the redacted, one-line explanation.
func (e *checkError) Error() string { return e.text }

// Unwrap returns the sentinel cause, or nil.
func (e *checkError) Unwrap() error { return e.cause }

// failure builds a non-ok Result whose Err is the redacted message.
func failure(outcome Outcome, secret string, cause error, format string, args ...any) Result {
	text := Redact(fmt.Sprintf(format, args...), secret)
	return Result{Outcome: outcome, Err: &checkError{text: text, cause: cause}}
}

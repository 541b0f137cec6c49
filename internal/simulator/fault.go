package simulator

import (
	"context"
	"net/http"
	"strconv"
)

// Fault is an upstream failure the simulator can be told to produce.
type Fault int

// The faults. Each reproduces a failure a checker must survive.
const (
	// FaultNone answers normally.
	FaultNone Fault = iota
	// FaultHang never answers: the request is held until the client gives
	// up or the simulator is closed.
	FaultHang
	// FaultServerError answers 500 with an HTML page, as a reverse proxy
	// in front of a failed upstream does.
	FaultServerError
	// FaultRateLimited answers 429 with a Retry-After header.
	FaultRateLimited
	// FaultTruncated answers 200 with the first half of the JSON body.
	FaultTruncated
	// FaultInvalidKey answers 401 as for an unknown key, even for a known
	// one.
	FaultInvalidKey
	// FaultBudgetError answers LiteLLM's 429 budget error, whatever the
	// spend: the false budget errors a checker must not trust blindly.
	FaultBudgetError
)

// String names the fault, for test names and messages.
func (f Fault) String() string {
	switch f {
	case FaultNone:
		return "none"
	case FaultHang:
		return "hang"
	case FaultServerError:
		return "server_error"
	case FaultRateLimited:
		return "rate_limited"
	case FaultTruncated:
		return "truncated"
	case FaultInvalidKey:
		return "invalid_key"
	case FaultBudgetError:
		return "budget_error"
	}
	return "fault(" + strconv.Itoa(int(f)) + ")"
}

// serverErrorPage is what a proxy in front of a failed upstream sends.
const serverErrorPage = `<html>
<head><title>500 Internal Server Error</title></head>
<body>
<center><h1>500 Internal Server Error</h1></center>
<hr><center>nginx</center>
</body>
</html>
`

// rateLimitMessage is the wording of LiteLLM's parallel request limiter.
const rateLimitMessage = "LiteLLM Rate Limit Handler for rate limit type = key. " +
	"Crossed TPM / RPM / Max Parallel Request Limit. current rpm: 61, rpm limit: 60"

// fail answers the request described by rt with its fault.
func (s *Simulator) fail(w http.ResponseWriter, r *http.Request, rt route) {
	switch rt.fault {
	case FaultHang:
		s.hang(r.Context())
	case FaultServerError:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(serverErrorPage))
	case FaultRateLimited:
		w.Header().Set("Retry-After", s.retryAfter)
		writeError(w, http.StatusTooManyRequests, rateLimitMessage, "throttling_error", none)
	case FaultTruncated:
		body := marshal(infoBodyOf(rt, s.now()))
		writeRaw(w, http.StatusOK, body[:len(body)/2])
	case FaultInvalidKey:
		writeAuthError(w, rt.secret)
	case FaultBudgetError:
		writeBudgetError(w, rt.key.spend(s.now()), rt.key.MaxBudgetUSD)
	default:
		s.keyInfo(w, rt)
	}
}

// hang holds the request until the client goes away or the simulator is
// closed, and writes nothing.
func (s *Simulator) hang(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-s.done:
		abort()
	}
}

// abort drops the request without an answer, as a server going down does.
// Returning instead would send an empty 200.
func abort() {
	panic(http.ErrAbortHandler)
}

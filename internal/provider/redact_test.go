package provider

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/keyspend/keyspend_exporter/internal/secrettest"
)

func TestRedact(t *testing.T) {
	cases := []struct {
		name, text, secret, want string
	}{
		{"whole secret", "Received API Key = " + testSecret + ", bad",
			testSecret, "Received API Key = [REDACTED], bad"},
		{"eight-character piece", "key ends in " + testSecret[18:26] + "!",
			testSecret, "key ends in [REDACTED]!"},
		{"seven characters stay", "tail " + testSecret[19:26],
			testSecret, "tail " + testSecret[19:26]},
		{"two pieces", testSecret[:10] + " and " + testSecret[12:],
			testSecret, "[REDACTED] and [REDACTED]"},
		{"secret on a line of its own", "key\n" + testSecret + "\n\t",
			testSecret, "key [REDACTED]"},
		{"other API key", "neighbour sk-or-v1-0123456789abcdef used", testSecret,
			"neighbour [REDACTED] used"},
		{"not a key inside a word", "task-1234 done", "", "task-1234 done"},
		{"bearer header echoed", "got authorization: Bearer abc.def-123 here", "",
			"got authorization: Bearer [REDACTED] here"},
		{"short secret replaced whole", "pin 1234 and 12345", "1234",
			"pin [REDACTED] and [REDACTED]5"},
		{"no secret", "plain text", "", "plain text"},
		{"one line", "a\r\nb\t\tc\x00d  ", "", "a b c d"},
		{"invalid UTF-8", "bad \xff byte", "", "bad \uFFFD byte"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Redact(c.text, c.secret); got != c.want {
				t.Errorf("Redact(%q) = %q, want %q", c.text, got, c.want)
			}
		})
	}
}

func TestRedactTruncates(t *testing.T) {
	long := strings.Repeat("é", 500)

	got := Redact(long, "")

	if want := strings.Repeat("é", 200) + "..."; got != want {
		t.Errorf("Redact of 500 runes = %d runes, want %q", utf8.RuneCountInString(got), want)
	}
}

func TestRedactSecretAtTheCut(t *testing.T) {
	// The secret straddles the 200th rune: the part before the cut is still
	// a run of the secret and must go.
	text := strings.Repeat("x", 190) + testSecret

	got := Redact(text, testSecret)

	if want := strings.Repeat("x", 190) + "[REDACTED]..."; got != want {
		t.Errorf("Redact = %q, want %q", got, want)
	}
}

func TestMask(t *testing.T) {
	cases := map[string]string{
		testSecret:                "sk-...F9hJ",
		"sk-short":                "****",
		"":                        "****",
		"sk-or-v1-0123456789abcd": "sk-...abcd",
	}
	for secret, want := range cases {
		if got := Mask(secret); got != want {
			t.Errorf("Mask(%q) = %q, want %q", secret, got, want)
		}
	}
}

// An upstream may quote the key URL-escaped; that form is cut out too.
func TestRedactEscapedSecret(t *testing.T) {
	secret := "sk-abc/def+ghi=jkl/mno+pqr="
	for _, text := range []string{
		"bad key " + url.QueryEscape(secret),
		"GET /v1/keys/" + url.PathEscape(secret) + " failed",
	} {
		got := Redact(text, secret)
		for _, form := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret)} {
			if piece := secrettest.Piece(got, form); piece != "" {
				t.Fatalf("Redact(%q) = %q keeps %q", text, got, piece)
			}
		}
	}
}

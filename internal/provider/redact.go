package provider

import (
	"net/url"
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// redacted replaces whatever Redact removes.
const redacted = "[REDACTED]"

// maxTextRunes bounds the length of any text Redact returns, so one chatty
// upstream cannot flood a log line or a status page.
const maxTextRunes = 200

// minSecretPiece is the shortest run of a secret's characters that counts as
// leaking it. Shorter runs occur by chance in ordinary text.
const minSecretPiece = 8

var (
	// keyPattern matches what looks like an API key of any provider, so a
	// key other than the one checked (a hash, a neighbour's key) is hidden
	// too.
	keyPattern = regexp.MustCompile(`\bsk-[A-Za-z0-9_\-]{4,}`)
	// bearerPattern matches an echoed Authorization header value.
	bearerPattern = regexp.MustCompile(`(?i)\bbearer\s+\S+`)
)

// Redact makes upstream text safe to log: it puts it on one line, cuts it to
// about 200 characters, and removes the secret, every run of 8 or more of the
// secret's characters, and anything that looks like an API key or a bearer
// token.
func Redact(text, secret string) string {
	// The secret is looked for last, in the text as it will be shown, so
	// no later step can join what was left into a piece of it.
	text = truncate(oneLine(text), maxTextRunes)
	for _, form := range secretForms(secret) {
		text = redactSecret(text, form)
	}
	text = keyPattern.ReplaceAllString(text, redacted)
	return bearerPattern.ReplaceAllString(text, "Bearer "+redacted)
}

// Mask shows enough of a secret to tell keys apart in a listing: its first
// three and last four characters, never eight in a row.
func Mask(secret string) string {
	if len(secret) < 16 {
		return "****"
	}
	return secret[:3] + "..." + secret[len(secret)-4:]
}

// oneLine turns every run of white space and control characters into one
// space and invalid UTF-8 into U+FFFD.
func oneLine(s string) string {
	var b strings.Builder
	gap := false
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			gap = true
			continue
		}
		if gap && b.Len() > 0 {
			b.WriteByte(' ')
		}
		gap = false
		b.WriteRune(r)
	}
	return b.String()
}

// truncate cuts s to n runes, marking the cut.
func truncate(s string, n int) string {
	count := 0
	for i := range s {
		if count == n {
			return s[:i] + "..."
		}
		count++
	}
	return s
}

// redactSecret replaces every run of text covered by pieces of the secret
// minSecretPiece bytes long. Overlapping pieces merge into one replacement,
// so a whole secret becomes a single marker.
// secretForms lists the secret as an upstream may quote it: as is, and
// escaped for a URL query or path, which turns /, + and = into %XX.
func secretForms(secret string) []string {
	forms := []string{secret}
	for _, f := range []string{url.QueryEscape(secret), url.PathEscape(secret)} {
		if !slices.Contains(forms, f) {
			forms = append(forms, f)
		}
	}
	return forms
}

func redactSecret(text, secret string) string {
	if secret == "" {
		return text
	}
	if len(secret) < minSecretPiece {
		return strings.ReplaceAll(text, secret, redacted)
	}

	pieces := make(map[string]bool, len(secret)-minSecretPiece+1)
	for i := 0; i+minSecretPiece <= len(secret); i++ {
		pieces[secret[i:i+minSecretPiece]] = true
	}

	var b strings.Builder
	end := 0 // text[:end] is covered by the last marker written
	for i := 0; i < len(text); i++ {
		if i+minSecretPiece <= len(text) && pieces[text[i:i+minSecretPiece]] {
			if i >= end {
				b.WriteString(redacted)
			}
			end = i + minSecretPiece
		}
		if i >= end {
			b.WriteByte(text[i])
		}
	}
	// A secret with multi-byte characters may be cut mid-rune.
	return strings.ToValidUTF8(b.String(), "\uFFFD")
}

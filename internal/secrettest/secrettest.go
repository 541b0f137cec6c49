// Package secrettest holds, for tests, the project's one definition of a
// leaked secret: any run of PieceLen characters of it, anywhere in a text.
package secrettest

import "strings"

// PieceLen is the length of the shortest piece of a secret that counts as
// a leak.
const PieceLen = 8

// Piece returns the first PieceLen-character piece of secret found in text,
// or "" when there is none. A secret shorter than PieceLen leaks only whole.
func Piece(text, secret string) string {
	if len(secret) < PieceLen {
		if secret != "" && strings.Contains(text, secret) {
			return secret
		}
		return ""
	}
	for i := 0; i+PieceLen <= len(secret); i++ {
		if p := secret[i : i+PieceLen]; strings.Contains(text, p) {
			return p
		}
	}
	return ""
}

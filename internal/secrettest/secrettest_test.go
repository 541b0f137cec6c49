package secrettest

import "testing"

func TestPiece(t *testing.T) {
	const secret = "sk-0123456789abcdef"
	cases := []struct{ text, want string }{
		{"no secret here", ""},
		{"key ends in 89abcdef", "89abcdef"},
		{"a 7-char run 0123456 is not a leak", ""},
		{"whole " + secret, "sk-01234"},
	}
	for _, c := range cases {
		if got := Piece(c.text, secret); got != c.want {
			t.Errorf("Piece(%q) = %q, want %q", c.text, got, c.want)
		}
	}
	if Piece("short abc here", "abc") != "abc" || Piece("nothing", "abc") != "" {
		t.Error("a secret shorter than a piece must leak only whole")
	}
}

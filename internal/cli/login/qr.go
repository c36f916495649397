package login

import (
	"strings"

	"rsc.io/qr"
)

// qrQuiet is the quiet zone around a QR code, in modules: the standard
// asks for four; phones read two well, and a terminal has little room.
const qrQuiet = 2

// QR draws text as a QR code for a terminal, two modules a line with the
// half-block character, in black on white whatever the terminal's own
// colours (ANSI 30 and 47), so that a phone can read it on dark and light
// terminals alike. It returns "" for text too long for a QR code.
func QR(text string) string {
	code, err := qr.Encode(text, qr.L)
	if err != nil {
		return ""
	}
	black := func(x, y int) bool {
		x, y = x-qrQuiet, y-qrQuiet
		return x >= 0 && y >= 0 && x < code.Size && y < code.Size && code.Black(x, y)
	}
	size := code.Size + 2*qrQuiet
	var b strings.Builder
	for y := 0; y < size; y += 2 {
		b.WriteString("    \x1b[30;47m")
		for x := range size {
			// The upper half is the foreground: ▀ in black over white, or
			// the reverse, or a full or empty cell.
			switch top, bottom := black(x, y), black(x, y+1); {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteString(" ")
			}
		}
		b.WriteString("\x1b[0m\n")
	}
	return b.String()
}

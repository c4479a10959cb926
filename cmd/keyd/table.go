package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"unicode"
	"unicode/utf8"
)

// table prints the CLI's tables. Every cell goes through cell, so no value
// read from the server (a reason an operator typed, a kid) can add rows or
// columns or send escape sequences to the terminal.
type table struct{ tw *tabwriter.Writer }

// newTable starts a table on w with the given column names.
func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
	fmt.Fprintln(t.tw, strings.Join(header, "\t"))
	return t
}

// row prints one row; each value is formatted with %v and escaped.
func (t *table) row(values ...any) {
	cells := make([]string, len(values))
	for i, v := range values {
		cells[i] = cell(fmt.Sprint(v))
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

// flush writes the aligned table out.
func (t *table) flush() { t.tw.Flush() }

// cell escapes what must not reach a table as is: control characters (a
// newline would forge a row, a tab a column, ESC a terminal sequence),
// Unicode line separators and format characters (bidi overrides that
// reorder what is shown), invalid UTF-8, and the backslash itself, so that
// the escaped form is unambiguous. Escapes are Go's: \n, \t, \x1b, \u202e.
func cell(s string) string {
	if clean(s) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n <= 1 {
			fmt.Fprintf(&b, `\x%02x`, s[i])
		} else {
			escape(&b, r)
		}
		i += n
	}
	return b.String()
}

// clean reports whether s has nothing cell escapes.
func clean(s string) bool {
	for _, r := range s {
		if r == '\\' || r == utf8.RuneError || needsEscape(r) {
			return false
		}
	}
	return true
}

// escape writes the valid rune r, escaped when it must be.
func escape(b *strings.Builder, r rune) {
	switch {
	case r == '\\':
		b.WriteString(`\\`)
	case r == '\n':
		b.WriteString(`\n`)
	case r == '\r':
		b.WriteString(`\r`)
	case r == '\t':
		b.WriteString(`\t`)
	case needsEscape(r) && r < 0x80:
		fmt.Fprintf(b, `\x%02x`, r)
	case needsEscape(r):
		fmt.Fprintf(b, `\u%04x`, r)
	default:
		b.WriteRune(r)
	}
}

func needsEscape(r rune) bool {
	return unicode.IsControl(r) || unicode.In(r, unicode.Zl, unicode.Zp, unicode.Cf)
}

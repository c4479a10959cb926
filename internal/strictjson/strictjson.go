// Package strictjson is keyd's one strict JSON parser, with the two encoders
// its users need: the compact encoding of the claims keyd signs, and the RFC
// 8785 canonical form the audit chain hashes.
//
// encoding/json keeps the last of two duplicated members and silently
// replaces invalid UTF-8, so it cannot tell keyd what a caller meant; a claim
// set or an audit record whose meaning depends on the parser must never be
// trusted. Parse rejects both, keeps number literals exactly as written and
// produces a small tree whose object members are sorted by name.
package strictjson

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// MaxDepth bounds the nesting of arrays and objects.
const MaxDepth = 64

// Kind is the type of a JSON value.
type Kind uint8

// The kinds of JSON values.
const (
	Null Kind = iota
	False
	True
	Number
	String
	Array
	Object
)

// Value is one parsed JSON value.
type Value struct {
	Kind    Kind
	Text    string   // a string's decoded text, or a number's literal as written
	Elems   []Value  // the elements of an array
	Members []Member // the members of an object, sorted by name, names unique
}

// Member is one member of an object.
type Member struct {
	Name  string
	Value Value
}

// StringValue is the JSON string s.
func StringValue(s string) Value { return Value{Kind: String, Text: s} }

// NumberValue is the JSON number written lit, which must be a valid literal.
func NumberValue(lit string) Value { return Value{Kind: Number, Text: lit} }

// IsNonEmptyString reports whether v is a JSON string other than "".
func (v *Value) IsNonEmptyString() bool { return v.Kind == String && v.Text != "" }

// SyntaxError is malformed JSON at an offset of the input.
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s at offset %d", e.Msg, e.Offset) }

// DuplicateError is a member name that appears twice in one object. Path
// collects the enclosing member names and array indexes, innermost first.
type DuplicateError struct {
	Name string
	Path []string
}

func (e *DuplicateError) Error() string { return "duplicate member " + e.Name }

// Where names the object that holds the duplicate, like claims.address or
// claims.roles[2]; "" is the top-level value itself.
func (e *DuplicateError) Where() string {
	var b strings.Builder
	for i := len(e.Path) - 1; i >= 0; i-- {
		seg := e.Path[i]
		if b.Len() > 0 && !strings.HasPrefix(seg, "[") {
			b.WriteByte('.')
		}
		b.WriteString(seg)
	}
	return b.String()
}

// Parse parses data, which must hold exactly one JSON value in valid UTF-8.
// Errors are *SyntaxError or *DuplicateError.
func Parse(data []byte) (Value, error) {
	if !utf8.Valid(data) {
		return Value{}, &SyntaxError{Offset: invalidUTF8Offset(data), Msg: "invalid UTF-8"}
	}
	p := parsers.Get().(*parser)
	defer p.release()
	// One copy of the body backs every string and number of the tree.
	p.src, p.pos, p.depth = string(data), 0, 0
	v, err := p.value()
	if err != nil {
		return Value{}, err
	}
	p.skipSpace()
	if p.pos < len(p.src) {
		return Value{}, p.errorf("unexpected data after the top-level value")
	}
	return v, nil
}

func invalidUTF8Offset(data []byte) int {
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size == 1 {
			return i
		}
		i += size
	}
	return len(data)
}

type parser struct {
	src   string
	pos   int
	depth int
	// Scratch stacks shared by nested arrays and objects: each finished one is
	// copied out at its exact size, so a value costs one allocation.
	members []Member
	elems   []Value
	order   []int  // scratch for sorting members
	buf     []byte // scratch for decoding strings with escapes
}

// parsers keeps parsers with their scratch stacks between requests.
var parsers = sync.Pool{New: func() any { return new(parser) }}

// release returns p to the pool unless a large body grew its scratch space.
// A parse that succeeded left the scratch stacks empty and cleared; one that
// failed may have left members behind.
func (p *parser) release() {
	const limit = 1024
	clear(p.members)
	clear(p.elems)
	*p = parser{members: p.members[:0], elems: p.elems[:0], order: p.order[:0], buf: p.buf[:0]}
	if cap(p.members) <= limit && cap(p.elems) <= limit && cap(p.order) <= limit && cap(p.buf) <= 64*limit {
		parsers.Put(p)
	}
}

func (p *parser) errorf(format string, args ...any) error {
	return &SyntaxError{Offset: p.pos, Msg: fmt.Sprintf(format, args...)}
}

func (p *parser) skipSpace() {
	for p.pos < len(p.src) {
		switch p.src[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// peek returns the next byte after white space, or 0 at the end of the data.
func (p *parser) peek() byte {
	p.skipSpace()
	if p.pos < len(p.src) {
		return p.src[p.pos]
	}
	return 0
}

func (p *parser) value() (Value, error) {
	switch c := p.peek(); {
	case c == '{':
		return p.object()
	case c == '[':
		return p.array()
	case c == '"':
		s, err := p.string()
		return StringValue(s), err
	case c == '-' || '0' <= c && c <= '9':
		return p.number()
	case c == 't':
		return p.literal("true", True)
	case c == 'f':
		return p.literal("false", False)
	case c == 'n':
		return p.literal("null", Null)
	case p.pos >= len(p.src):
		return Value{}, p.errorf("unexpected end of input")
	default:
		return Value{}, p.errorf("unexpected character %q", c)
	}
}

func (p *parser) literal(word string, k Kind) (Value, error) {
	end := p.pos + len(word)
	if end > len(p.src) || p.src[p.pos:end] != word {
		return Value{}, p.errorf("invalid literal, want %s", word)
	}
	p.pos += len(word)
	return Value{Kind: k}, nil
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > MaxDepth {
		return p.errorf("arrays and objects nested more than %d levels deep", MaxDepth)
	}
	return nil
}

func (p *parser) object() (Value, error) {
	if err := p.enter(); err != nil {
		return Value{}, err
	}
	p.pos++ // '{'
	start := len(p.members)
	if p.peek() == '}' {
		p.pos++
		p.depth--
		return Value{Kind: Object}, nil
	}
	for more := true; more; {
		if p.peek() != '"' {
			return Value{}, p.errorf("expected a member name")
		}
		name, err := p.string()
		if err != nil {
			return Value{}, err
		}
		if p.peek() != ':' {
			return Value{}, p.errorf("expected ':' after a member name")
		}
		p.pos++
		v, err := p.value()
		if err != nil {
			return Value{}, withPath(err, name)
		}
		p.members = append(p.members, Member{Name: name, Value: v})
		switch p.peek() {
		case ',':
			p.pos++
		case '}':
			p.pos++
			more = false
		default:
			return Value{}, p.errorf("expected ',' or '}' after an object member")
		}
	}
	members := p.sortedMembers(start)
	for i := 1; i < len(members); i++ {
		if members[i].Name == members[i-1].Name {
			return Value{}, &DuplicateError{Name: members[i].Name}
		}
	}
	p.depth--
	return Value{Kind: Object, Members: members}, nil
}

// sortedMembers pops the members from start on off the scratch stack and
// returns them sorted by name. It sorts their indexes, not the members
// themselves, which are large and full of pointers.
func (p *parser) sortedMembers(start int) []Member {
	order := p.order[:0]
	for i := start; i < len(p.members); i++ {
		order = append(order, i)
	}
	slices.SortFunc(order, func(i, j int) int { return strings.Compare(p.members[i].Name, p.members[j].Name) })
	members := make([]Member, len(order))
	for k, i := range order {
		members[k] = p.members[i]
	}
	p.order = order
	clear(p.members[start:]) // keep no references into an old body in the pool
	p.members = p.members[:start]
	return members
}

func (p *parser) array() (Value, error) {
	if err := p.enter(); err != nil {
		return Value{}, err
	}
	p.pos++ // '['
	start := len(p.elems)
	if p.peek() == ']' {
		p.pos++
		p.depth--
		return Value{Kind: Array}, nil
	}
	for more := true; more; {
		v, err := p.value()
		if err != nil {
			return Value{}, withPath(err, fmt.Sprintf("[%d]", len(p.elems)-start))
		}
		p.elems = append(p.elems, v)
		switch p.peek() {
		case ',':
			p.pos++
		case ']':
			p.pos++
			more = false
		default:
			return Value{}, p.errorf("expected ',' or ']' after an array element")
		}
	}
	elems := slices.Clone(p.elems[start:])
	clear(p.elems[start:])
	p.elems = p.elems[:start]
	p.depth--
	return Value{Kind: Array, Elems: elems}, nil
}

// withPath records that err happened inside the member or element seg.
func withPath(err error, seg string) error {
	if d, ok := err.(*DuplicateError); ok {
		d.Path = append(d.Path, seg)
	}
	return err
}

// number scans a number literal with the RFC 8259 grammar
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?.
func (p *parser) number() (Value, error) {
	start := p.pos
	if p.src[p.pos] == '-' {
		p.pos++
	}
	switch {
	case p.pos < len(p.src) && p.src[p.pos] == '0':
		p.pos++
	case !p.digits():
		return Value{}, p.errorf("invalid number")
	}
	if p.pos < len(p.src) && p.src[p.pos] == '.' {
		p.pos++
		if !p.digits() {
			return Value{}, p.errorf("invalid number: no digits after '.'")
		}
	}
	if p.pos < len(p.src) && (p.src[p.pos] == 'e' || p.src[p.pos] == 'E') {
		p.pos++
		if p.pos < len(p.src) && (p.src[p.pos] == '+' || p.src[p.pos] == '-') {
			p.pos++
		}
		if !p.digits() {
			return Value{}, p.errorf("invalid number: no digits in the exponent")
		}
	}
	return NumberValue(p.src[start:p.pos]), nil
}

// digits skips [0-9]+ and reports whether there was at least one.
func (p *parser) digits() bool {
	start := p.pos
	for p.pos < len(p.src) && '0' <= p.src[p.pos] && p.src[p.pos] <= '9' {
		p.pos++
	}
	return p.pos > start
}

// string decodes a string starting at its opening quote. The data is known to
// be valid UTF-8.
func (p *parser) string() (string, error) {
	p.pos++ // '"'
	start := p.pos
	for p.pos < len(p.src) {
		switch c := p.src[p.pos]; {
		case c == '"':
			p.pos++
			return p.src[start : p.pos-1], nil
		case c == '\\':
			return p.escapedString(start)
		case c < 0x20:
			return "", p.errorf("control character in a string")
		}
		p.pos++
	}
	return "", p.errorf("unterminated string")
}

// escapedString finishes a string from its first backslash on.
func (p *parser) escapedString(start int) (string, error) {
	buf := append(p.buf[:0], p.src[start:p.pos]...)
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case c == '"':
			p.pos++
			p.buf = buf
			return string(buf), nil
		case c < 0x20:
			return "", p.errorf("control character in a string")
		case c != '\\':
			buf = append(buf, c)
			p.pos++
			continue
		}
		if p.pos+1 >= len(p.src) {
			break
		}
		p.pos += 2
		switch e := p.src[p.pos-1]; e {
		case '"', '\\', '/':
			buf = append(buf, e)
		case 'b':
			buf = append(buf, '\b')
		case 'f':
			buf = append(buf, '\f')
		case 'n':
			buf = append(buf, '\n')
		case 'r':
			buf = append(buf, '\r')
		case 't':
			buf = append(buf, '\t')
		case 'u':
			r, err := p.unicodeEscape()
			if err != nil {
				return "", err
			}
			buf = utf8.AppendRune(buf, r)
		default:
			p.pos -= 2
			return "", p.errorf("invalid escape in a string")
		}
	}
	return "", p.errorf("unterminated string")
}

// unicodeEscape decodes the XXXX of \uXXXX, and the low half of a surrogate
// pair. An unpaired surrogate is not a character: keyd refuses it rather than
// signing a replacement character the caller never sent.
func (p *parser) unicodeEscape() (rune, error) {
	r, ok := p.hex4()
	if !ok {
		return 0, p.errorf("invalid \\u escape in a string")
	}
	if !utf16.IsSurrogate(r) {
		return r, nil
	}
	if r < 0xdc00 && p.pos+2 <= len(p.src) && p.src[p.pos] == '\\' && p.src[p.pos+1] == 'u' {
		p.pos += 2
		low, ok := p.hex4()
		if pair := utf16.DecodeRune(r, low); ok && pair != utf8.RuneError {
			return pair, nil
		}
	}
	return 0, p.errorf("unpaired UTF-16 surrogate in a string")
}

func (p *parser) hex4() (rune, bool) {
	if p.pos+4 > len(p.src) {
		return 0, false
	}
	var r rune
	for i := p.pos; i < p.pos+4; i++ {
		c := p.src[i]
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c -= 'a' - 10
		case 'A' <= c && c <= 'F':
			c -= 'A' - 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	p.pos += 4
	return r, true
}

// AppendCompact appends the compact encoding of v: members in sorted order, no
// HTML escaping, strings escaped exactly as encoding/json escapes them.
func AppendCompact(dst []byte, v *Value) []byte {
	switch v.Kind {
	case Null:
		return append(dst, "null"...)
	case False:
		return append(dst, "false"...)
	case True:
		return append(dst, "true"...)
	case Number:
		return append(dst, v.Text...)
	case String:
		return appendString(dst, v.Text)
	case Array:
		dst = append(dst, '[')
		for i := range v.Elems {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendCompact(dst, &v.Elems[i])
		}
		return append(dst, ']')
	default:
		return AppendMerged(dst, v.Members, nil)
	}
}

// AppendMerged appends the object made of members with over laid on top: a
// member of over takes the place of the member of the same name, if any. Both
// lists are sorted by name, and so is the result.
func AppendMerged(dst []byte, members, over []Member) []byte {
	dst = append(dst, '{')
	for i, j := 0, 0; i < len(members) || j < len(over); {
		if i+j > 0 {
			dst = append(dst, ',')
		}
		var m *Member
		switch {
		case j == len(over) || i < len(members) && members[i].Name < over[j].Name:
			m = &members[i]
			i++
		case i < len(members) && members[i].Name == over[j].Name:
			m = &over[j]
			i, j = i+1, j+1
		default:
			m = &over[j]
			j++
		}
		dst = appendString(dst, m.Name)
		dst = append(dst, ':')
		dst = AppendCompact(dst, &m.Value)
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s, which is valid UTF-8, as a JSON string escaped as
// encoding/json escapes it.
func appendString(dst []byte, s string) []byte { return appendEscaped(dst, s, true) }

// appendEscaped appends s as a JSON string: '"', '\\' and control characters
// escaped, and U+2028 and U+2029 too when lineSeps is set.
func appendEscaped(dst []byte, s string, lineSeps bool) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if lineSeps && (r == '\u2028' || r == '\u2029') { // as encoding/json: JSONP-safe
				dst = append(dst, s[start:i]...)
				dst = append(dst, `\u202`...)
				dst = append(dst, hexDigits[r&0xf])
				start = i + size
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		dst = append(dst, s[start:i]...)
		switch c {
		case '"', '\\':
			dst = append(dst, '\\', c)
		case '\b':
			dst = append(dst, '\\', 'b')
		case '\f':
			dst = append(dst, '\\', 'f')
		case '\n':
			dst = append(dst, '\\', 'n')
		case '\r':
			dst = append(dst, '\\', 'r')
		case '\t':
			dst = append(dst, '\\', 't')
		default:
			dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
)

// maxDepth bounds the nesting of JSON values canonicalJSON accepts. Events
// are flat; the bound only keeps hostile input from recursing deeply.
const maxDepth = 32

// maxSafeInteger is 2^53, the largest magnitude up to which every integer is
// exactly representable as an IEEE 754 double (I-JSON, RFC 7493).
const maxSafeInteger = 1 << 53

// canonicalJSON returns the RFC 8785 (JSON Canonicalization Scheme) form of
// the JSON text data. A top-level object member named drop (when not empty)
// is left out, which is how an event's hash excludes the hash itself.
// Duplicate member names, integers beyond ±2^53 and trailing data are errors.
func canonicalJSON(data []byte, drop string) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := parseValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON value")
	}
	if obj, ok := v.(object); ok && drop != "" {
		obj = slices.DeleteFunc(obj, func(m member) bool { return m.key == drop })
		v = obj
	}
	var buf bytes.Buffer
	if err := writeCanonical(&buf, v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// object is a parsed JSON object; member order is the input order until
// writeCanonical sorts it.
type object []member

type member struct {
	key string
	val any
}

// parseValue reads one JSON value from dec. Scalars are string, json.Number,
// bool or nil; containers are object and []any.
func parseValue(dec *json.Decoder, depth int) (any, error) {
	if depth > maxDepth {
		return nil, errors.New("JSON nested too deeply")
	}
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF && depth == 0 {
			return nil, errors.New("empty JSON text")
		}
		return nil, eofErr(err)
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			var obj object
			seen := make(map[string]bool)
			for dec.More() {
				ktok, err := dec.Token()
				if err != nil {
					return nil, eofErr(err)
				}
				key, ok := ktok.(string)
				if !ok {
					return nil, errors.New("object member name is not a string")
				}
				if seen[key] {
					return nil, fmt.Errorf("duplicate member %q", key)
				}
				seen[key] = true
				val, err := parseValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				obj = append(obj, member{key: key, val: val})
			}
			if _, err := dec.Token(); err != nil { // the closing '}'
				return nil, eofErr(err)
			}
			return obj, nil
		case '[':
			arr := []any{}
			for dec.More() {
				val, err := parseValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				arr = append(arr, val)
			}
			if _, err := dec.Token(); err != nil { // the closing ']'
				return nil, eofErr(err)
			}
			return arr, nil
		}
		return nil, fmt.Errorf("unexpected %q", t)
	default:
		return t, nil
	}
}

// eofErr names an end of input inside a value as what it is.
func eofErr(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return errors.New("unexpected end of JSON text")
	}
	return err
}

func writeCanonical(buf *bytes.Buffer, v any) error {
	switch t := v.(type) {
	case nil:
		buf.WriteString("null")
	case bool:
		buf.WriteString(strconv.FormatBool(t))
	case string:
		writeString(buf, t)
	case json.Number:
		s, err := formatNumber(t)
		if err != nil {
			return err
		}
		buf.WriteString(s)
	case []any:
		buf.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				buf.WriteByte(',')
			}
			if err := writeCanonical(buf, e); err != nil {
				return err
			}
		}
		buf.WriteByte(']')
	case object:
		sorted := slices.Clone(t)
		slices.SortFunc(sorted, func(a, b member) int { return compareUTF16(a.key, b.key) })
		buf.WriteByte('{')
		for i, m := range sorted {
			if i > 0 {
				buf.WriteByte(',')
			}
			writeString(buf, m.key)
			buf.WriteByte(':')
			if err := writeCanonical(buf, m.val); err != nil {
				return err
			}
		}
		buf.WriteByte('}')
	default:
		return fmt.Errorf("unsupported JSON value %T", v)
	}
	return nil
}

// compareUTF16 orders strings by their UTF-16 code units, as RFC 8785
// section 3.2.3 requires for member names.
func compareUTF16(a, b string) int {
	return slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
}

// writeString writes s as a JSON string with the minimal escaping of RFC 8785
// (ECMAScript JSON.stringify): only '"', '\\' and control characters.
func writeString(buf *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	buf.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			buf.WriteString(`\"`)
		case '\\':
			buf.WriteString(`\\`)
		case '\b':
			buf.WriteString(`\b`)
		case '\f':
			buf.WriteString(`\f`)
		case '\n':
			buf.WriteString(`\n`)
		case '\r':
			buf.WriteString(`\r`)
		case '\t':
			buf.WriteString(`\t`)
		default:
			if r < 0x20 {
				buf.WriteString(`\u00`)
				buf.WriteByte(hex[r>>4])
				buf.WriteByte(hex[r&0xf])
			} else {
				buf.WriteRune(r)
			}
		}
	}
	buf.WriteByte('"')
}

// formatNumber writes n as ECMAScript's Number.prototype.toString does
// (RFC 8785 section 3.2.2.3). An integer literal must lie within ±2^53, so
// that no two distinct integers share a canonical form.
func formatNumber(n json.Number) (string, error) {
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil || i > maxSafeInteger || i < -maxSafeInteger {
			return "", fmt.Errorf("integer %s is outside the I-JSON range ±2^53", s)
		}
		return strconv.FormatInt(i, 10), nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return "", fmt.Errorf("number %s is not a finite double", s)
	}
	return formatES6(f), nil
}

// formatES6 formats a finite double like ECMAScript: shortest round-trip
// digits, plain notation for 1e-6 <= |f| < 1e21, otherwise an exponent
// without leading zeros ("1e+30", "1e-7").
func formatES6(f float64) string {
	if f == 0 {
		return "0" // also -0
	}
	sign := ""
	if f < 0 {
		sign, f = "-", -f
	}
	format := byte('e')
	if f >= 1e-6 && f < 1e21 {
		format = 'f'
	}
	s := strconv.FormatFloat(f, format, -1, 64)
	if i := strings.IndexByte(s, 'e'); i > 0 && len(s) > i+3 && s[i+2] == '0' {
		s = s[:i+2] + s[i+3:] // Go writes "1e+09", ECMAScript "1e+9"
	}
	return sign + s
}

package strictjson

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf16"
)

// maxSafeInteger is 2^53, the largest magnitude up to which every integer is
// exactly representable as an IEEE 754 double (I-JSON, RFC 7493).
const maxSafeInteger = 1 << 53

// AppendCanonical appends the RFC 8785 (JSON Canonicalization Scheme) form of
// v: members sorted by their UTF-16 code units, minimal string escaping,
// numbers as ECMAScript writes them. An integer literal beyond ±2^53 or a
// number that is not a finite double is an error, so that no two distinct
// values share a canonical form.
func AppendCanonical(dst []byte, v *Value) ([]byte, error) {
	var err error
	switch v.Kind {
	case Null:
		return append(dst, "null"...), nil
	case False:
		return append(dst, "false"...), nil
	case True:
		return append(dst, "true"...), nil
	case Number:
		s, err := formatNumber(v.Text)
		return append(dst, s...), err
	case String:
		return appendCanonicalString(dst, v.Text), nil
	case Array:
		dst = append(dst, '[')
		for i := range v.Elems {
			if i > 0 {
				dst = append(dst, ',')
			}
			if dst, err = AppendCanonical(dst, &v.Elems[i]); err != nil {
				return dst, err
			}
		}
		return append(dst, ']'), nil
	}
	sorted := slices.Clone(v.Members)
	slices.SortFunc(sorted, func(a, b Member) int { return compareUTF16(a.Name, b.Name) })
	dst = append(dst, '{')
	for i := range sorted {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendCanonicalString(dst, sorted[i].Name)
		dst = append(dst, ':')
		if dst, err = AppendCanonical(dst, &sorted[i].Value); err != nil {
			return dst, err
		}
	}
	return append(dst, '}'), nil
}

// compareUTF16 orders strings by their UTF-16 code units, as RFC 8785
// section 3.2.3 requires for member names.
func compareUTF16(a, b string) int {
	return slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
}

// appendCanonicalString appends s, which is valid UTF-8, as a JSON string
// with the minimal escaping of RFC 8785 (ECMAScript JSON.stringify): only
// '"', '\\' and control characters.
func appendCanonicalString(dst []byte, s string) []byte { return appendEscaped(dst, s, false) }

// formatNumber writes n as ECMAScript's Number.prototype.toString does
// (RFC 8785 section 3.2.2.3). An integer literal must lie within ±2^53, so
// that no two distinct integers share a canonical form.
func formatNumber(s string) (string, error) {
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

package strictjson

import (
	"math"
	"testing"
)

// canonical is the RFC 8785 form of the JSON text in.
func canonical(in string) (string, error) {
	v, err := Parse([]byte(in))
	if err != nil {
		return "", err
	}
	out, err := AppendCanonical(nil, &v)
	return string(out), err
}

func TestAppendCanonical(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{
			// RFC 8785 section 3.2.2.
			name: "rfc 8785 sample",
			in: `{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`,
			want: `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`,
		},
		{
			// RFC 8785 section 3.2.3: member names sorted by UTF-16 code units.
			name: "rfc 8785 sorting",
			in:   `{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}`,
			want: "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"\u00f6\":\"Latin Small Letter O With Diaeresis\",\"\u20ac\":\"Euro Sign\",\"\U0001F600\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}",
		},
		{name: "nested and whitespace", in: " { \"b\" : [ 1 , { \"z\":1,\"a\":2 } ] , \"a\" : {} } ", want: `{"a":{},"b":[1,{"a":2,"z":1}]}`},
		{name: "integers", in: `[0,-0,1,-1,9007199254740992,-9007199254740992,100]`, want: `[0,0,1,-1,9007199254740992,-9007199254740992,100]`},
		{name: "no html escaping", in: `"<a href='x'>&amp;</a>\u2028"`, want: "\"<a href='x'>&amp;</a>\u2028\""},
		{name: "control characters", in: `"\u0000\u0001\b\t\n\f\r\u001f\u007f"`, want: "\"\\u0000\\u0001\\b\\t\\n\\f\\r\\u001f\u007f\""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := canonical(tc.in)
			if err != nil {
				t.Fatalf("canonical: %v", err)
			}
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestFormatES6 uses the IEEE 754 test values of RFC 8785 appendix B.
func TestFormatES6(t *testing.T) {
	tests := []struct {
		bits uint64
		want string
	}{
		{0x0000000000000000, "0"},
		{0x8000000000000000, "0"},
		{0x0000000000000001, "5e-324"},
		{0x8000000000000001, "-5e-324"},
		{0x7fefffffffffffff, "1.7976931348623157e+308"},
		{0xffefffffffffffff, "-1.7976931348623157e+308"},
		{0x4340000000000000, "9007199254740992"},
		{0xc340000000000000, "-9007199254740992"},
		{0x4430000000000000, "295147905179352830000"},
		{0x44b52d02c7e14af5, "9.999999999999997e+22"},
		{0x44b52d02c7e14af6, "1e+23"},
		{0x44b52d02c7e14af7, "1.0000000000000001e+23"},
		{0x444b1ae4d6e2ef4e, "999999999999999700000"},
		{0x444b1ae4d6e2ef4f, "999999999999999900000"},
		{0x444b1ae4d6e2ef50, "1e+21"},
		{0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
		{0x3eb0c6f7a0b5ed8d, "0.000001"},
		{0x41b3de4355555553, "333333333.3333332"},
		{0x41b3de4355555554, "333333333.33333325"},
		{0x41b3de4355555555, "333333333.3333333"},
		{0x41b3de4355555556, "333333333.3333334"},
		{0x41b3de4355555557, "333333333.33333343"},
		{0xbecbf647612f3696, "-0.0000033333333333333333"},
		{0x43143ff3c1cb0959, "1424953923781206.2"},
	}
	for _, tc := range tests {
		if got := formatES6(math.Float64frombits(tc.bits)); got != tc.want {
			t.Errorf("%#016x: got %s, want %s", tc.bits, got, tc.want)
		}
	}
}

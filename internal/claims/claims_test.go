package claims

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openedx-keyd/keyd/internal/strictjson"
)

const (
	issuer  = "http://localhost:18000/oauth2"
	nowUnix = 1_700_000_000
	// jtiOnes is the jti drawn from onesReader: sixteen 0x01 bytes.
	jtiOnes = "AQEBAQEBAQEBAQEBAQEBAQ"
)

var (
	testPolicy = Policy{
		Issuers:     []string{issuer, "https://lms.example.com/oauth2"},
		MaxLifetime: time.Hour,
		ClockSkew:   time.Minute,
	}
	// testNow is half a second past nowUnix: NumericDates are whole seconds.
	testNow = time.Unix(nowUnix, 500_000_000)
)

// openEdXClaims are the claims the LMS sends for a password grant.
const openEdXClaims = `{"iss":"http://localhost:18000/oauth2","aud":"openedx","sub":"anon-123",` +
	`"grant_type":"password","preferred_username":"staff","scopes":["email","profile"],` +
	`"version":"1.2.0","is_restricted":false,"filters":[],"email_verified":true}`

// onesReader is a rand that yields 0x01 bytes.
type onesReader struct{}

func (onesReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 1
	}
	return len(p), nil
}

// req returns a sign request body whose claims are the four required ones
// plus extra, a comma-led list of members (or ""), and whose other top-level
// members are top, also comma-led.
func req(extra, top string) string {
	return `{"claims":{"iss":"` + issuer + `","aud":"openedx","sub":"anon-123","grant_type":"password"` +
		extra + `}` + top + `}`
}

// reqWithout is req without the claim name.
func reqWithout(name, extra string) string {
	c := map[string]string{"iss": `"` + issuer + `"`, "aud": `"openedx"`, "sub": `"anon-123"`, "grant_type": `"password"`}
	delete(c, name)
	var members []string
	for _, n := range []string{"iss", "aud", "sub", "grant_type"} {
		if v, ok := c[n]; ok {
			members = append(members, fmt.Sprintf("%q:%s", n, v))
		}
	}
	return `{"claims":{` + strings.Join(members, ",") + extra + `}}`
}

func TestBuildRefuses(t *testing.T) {
	deep := strings.Repeat(`{"a":`, strictjson.MaxDepth) + "1" + strings.Repeat("}", strictjson.MaxDepth)
	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantCode   string
	}{
		// Malformed bodies.
		{"empty body", ``, 400, CodeInvalidJSON},
		{"white space only", " \n", 400, CodeInvalidJSON},
		{"not json", `{not json`, 400, CodeInvalidJSON},
		{"truncated", `{"claims":{"iss":"x"`, 400, CodeInvalidJSON},
		{"trailing value", req("", "") + ` {}`, 400, CodeInvalidJSON},
		{"trailing garbage", req("", "") + `x`, 400, CodeInvalidJSON},
		{"trailing comma in object", req(`,"x":1,`, ""), 400, CodeInvalidJSON},
		{"trailing comma in array", req(`,"x":[1,]`, ""), 400, CodeInvalidJSON},
		{"missing colon", req(`,"x" 1`, ""), 400, CodeInvalidJSON},
		{"unquoted name", req(`,x:1`, ""), 400, CodeInvalidJSON},
		{"single quotes", req(`,'x':1`, ""), 400, CodeInvalidJSON},
		{"comment", req(`/* hi */`, ""), 400, CodeInvalidJSON},
		{"invalid UTF-8 in a value", req(`,"x":"`+"\xff"+`"`, ""), 400, CodeInvalidJSON},
		{"invalid UTF-8 in a name", req(`,"`+"\xc3\x28"+`":1`, ""), 400, CodeInvalidJSON},
		{"encoded surrogate in UTF-8", req(`,"x":"`+"\xed\xa0\x80"+`"`, ""), 400, CodeInvalidJSON},
		{"raw control character", req(`,"x":"a`+"\n"+`b"`, ""), 400, CodeInvalidJSON},
		{"unpaired high surrogate", req(`,"x":"\ud800"`, ""), 400, CodeInvalidJSON},
		{"high surrogate then letter", req(`,"x":"\ud800x"`, ""), 400, CodeInvalidJSON},
		{"two high surrogates", req(`,"x":"\ud800\ud800"`, ""), 400, CodeInvalidJSON},
		{"unpaired low surrogate", req(`,"x":"\udc00"`, ""), 400, CodeInvalidJSON},
		{"bad escape", req(`,"x":"\x41"`, ""), 400, CodeInvalidJSON},
		{"short unicode escape", req(`,"x":"\u41"`, ""), 400, CodeInvalidJSON},
		{"unterminated string", `{"claims":{"x":"abc`, 400, CodeInvalidJSON},
		{"backslash at the end", `{"claims":{"x":"abc\`, 400, CodeInvalidJSON},
		{"leading zero", req(`,"x":01`, ""), 400, CodeInvalidJSON},
		{"plus sign", req(`,"x":+1`, ""), 400, CodeInvalidJSON},
		{"bare minus", req(`,"x":-`, ""), 400, CodeInvalidJSON},
		{"no digits after point", req(`,"x":1.`, ""), 400, CodeInvalidJSON},
		{"no integer part", req(`,"x":.5`, ""), 400, CodeInvalidJSON},
		{"empty exponent", req(`,"x":1e+`, ""), 400, CodeInvalidJSON},
		{"NaN", req(`,"x":NaN`, ""), 400, CodeInvalidJSON},
		{"Infinity", req(`,"x":-Infinity`, ""), 400, CodeInvalidJSON},
		{"misspelt literal", req(`,"x":tru`, ""), 400, CodeInvalidJSON},
		{"byte order mark", "\ufeff" + req("", ""), 400, CodeInvalidJSON},
		{"nested too deep", req(`,"x":`+deep, ""), 400, CodeInvalidJSON},
		{"body an array", `[]`, 400, CodeInvalidRequest},
		{"body a string", `"claims"`, 400, CodeInvalidRequest},
		{"body null", `null`, 400, CodeInvalidRequest},
		{"no claims", `{}`, 400, CodeInvalidRequest},
		{"only ttl", `{"ttl":"15m"}`, 400, CodeInvalidRequest},
		{"claims a string", `{"claims":"x"}`, 400, CodeInvalidRequest},
		{"claims null", `{"claims":null}`, 400, CodeInvalidRequest},
		{"claims an array", `{"claims":[]}`, 400, CodeInvalidRequest},
		{"header member", req("", `,"header":{"alg":"none"}`), 400, CodeUnknownMember},
		{"kid member", req("", `,"kid":"k1"`), 400, CodeUnknownMember},
		{"misspelt claims", `{"claim":{}}`, 400, CodeUnknownMember},
		{"ttl garbage", req("", `,"ttl":"forever"`), 400, CodeInvalidTTL},
		{"ttl without unit", req("", `,"ttl":"15"`), 400, CodeInvalidTTL},
		{"ttl empty", req("", `,"ttl":""`), 400, CodeInvalidTTL},
		{"ttl a number", req("", `,"ttl":900`), 400, CodeInvalidTTL},
		{"ttl null", req("", `,"ttl":null`), 400, CodeInvalidTTL},
		{"ttl zero", req("", `,"ttl":"0s"`), 400, CodeInvalidTTL},
		{"ttl bare zero", req("", `,"ttl":"0"`), 400, CodeInvalidTTL},
		{"ttl negative", req("", `,"ttl":"-5m"`), 400, CodeInvalidTTL},
		{"iat without exp", req(`,"iat":1700000000`, ""), 400, CodeInvalidTimes},
		{"exp without iat", req(`,"exp":1700000600`, ""), 400, CodeInvalidTimes},
		{"iat, exp and ttl", req(`,"iat":1700000000,"exp":1700000600`, `,"ttl":"10m"`), 400, CodeInvalidTimes},
		{"iat a string", req(`,"iat":"1700000000","exp":1700000600`, ""), 400, CodeInvalidTimes},
		{"exp null", req(`,"iat":1700000000,"exp":null`, ""), 400, CodeInvalidTimes},
		{"iat true", req(`,"iat":true,"exp":1700000600`, ""), 400, CodeInvalidTimes},

		// Claims that break the policy.
		{"missing iss", reqWithout("iss", ""), 422, CodeInvalidClaim},
		{"iss a number", reqWithout("iss", `,"iss":1`), 422, CodeInvalidClaim},
		{"iss null", reqWithout("iss", `,"iss":null`), 422, CodeInvalidClaim},
		{"iss an array", reqWithout("iss", `,"iss":["`+issuer+`"]`), 422, CodeInvalidClaim},
		{"foreign iss", reqWithout("iss", `,"iss":"https://evil.example/oauth2"`), 422, CodeIssuerNotAllowed},
		{"empty iss", reqWithout("iss", `,"iss":""`), 422, CodeIssuerNotAllowed},
		{"iss with trailing slash", reqWithout("iss", `,"iss":"`+issuer+`/"`), 422, CodeIssuerNotAllowed},
		{"missing aud", reqWithout("aud", ""), 422, CodeInvalidClaim},
		{"empty aud", reqWithout("aud", `,"aud":""`), 422, CodeInvalidClaim},
		{"empty aud array", reqWithout("aud", `,"aud":[]`), 422, CodeInvalidClaim},
		{"aud array with empty string", reqWithout("aud", `,"aud":["openedx",""]`), 422, CodeInvalidClaim},
		{"aud array with a number", reqWithout("aud", `,"aud":["openedx",1]`), 422, CodeInvalidClaim},
		{"aud a number", reqWithout("aud", `,"aud":7`), 422, CodeInvalidClaim},
		{"aud an object", reqWithout("aud", `,"aud":{}`), 422, CodeInvalidClaim},
		{"aud null", reqWithout("aud", `,"aud":null`), 422, CodeInvalidClaim},
		{"missing sub", reqWithout("sub", ""), 422, CodeInvalidClaim},
		{"empty sub", reqWithout("sub", `,"sub":""`), 422, CodeInvalidClaim},
		{"sub a number", reqWithout("sub", `,"sub":123`), 422, CodeInvalidClaim},
		{"sub null", reqWithout("sub", `,"sub":null`), 422, CodeInvalidClaim},
		{"missing grant_type", reqWithout("grant_type", ""), 422, CodeInvalidClaim},
		{"grant_type false", reqWithout("grant_type", `,"grant_type":false`), 422, CodeInvalidClaim},
		{"grant_type an array", reqWithout("grant_type", `,"grant_type":["password"]`), 422, CodeInvalidClaim},
		{"empty jti", req(`,"jti":""`, ""), 422, CodeInvalidClaim},
		{"jti a number", req(`,"jti":42`, ""), 422, CodeInvalidClaim},
		{"jti null", req(`,"jti":null`, ""), 422, CodeInvalidClaim},
		{"nbf a string", req(`,"nbf":"now"`, ""), 422, CodeInvalidClaim},
		{"nbf null", req(`,"nbf":null`, ""), 422, CodeInvalidClaim},
		{"ttl 2h", req("", `,"ttl":"2h"`), 422, CodeLifetimeTooLong},
		{"ttl 10h", req("", `,"ttl":"10h"`), 422, CodeLifetimeTooLong},
		{"ttl a nanosecond too long", req("", `,"ttl":"1h0m0.000000001s"`), 422, CodeLifetimeTooLong},
		{"lifetime 2h via exp", req(`,"iat":1700000000,"exp":1700007200`, ""), 422, CodeLifetimeTooLong},
		{"lifetime a second too long", req(`,"iat":1700000000,"exp":1700003601`, ""), 422, CodeLifetimeTooLong},
		{"exp in the past", req(`,"iat":1699992800,"exp":1699996400`, ""), 422, CodeTokenExpired},
		{"exp the current second", req(`,"iat":1699999000,"exp":1700000000`, ""), 422, CodeTokenExpired},
		{"iat in the future", req(`,"iat":1700003600,"exp":1700003700`, ""), 422, CodeIssuedInTheFuture},
		{"iat just past the skew", req(`,"iat":1700000061,"exp":1700000100`, ""), 422, CodeIssuedInTheFuture},
		{"exp equal to iat", req(`,"iat":1700000000,"exp":1700000000`, ""), 422, CodeInvalidClaim},
		{"exp before iat", req(`,"iat":1700000100,"exp":1700000050`, ""), 422, CodeInvalidClaim},
		{"iat a fraction", req(`,"iat":1700000000.5,"exp":1700000600`, ""), 422, CodeInvalidClaim},
		{"exp a fraction", req(`,"iat":1700000000,"exp":17000006e-1`, ""), 422, CodeInvalidClaim},
		{"exp huge", req(`,"iat":1700000000,"exp":1e300`, ""), 422, CodeInvalidClaim},
		{"exp beyond int64", req(`,"iat":1700000000,"exp":12345678901234567890`, ""), 422, CodeInvalidClaim},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := testPolicy.Build([]byte(tt.body), testNow, onesReader{})
			var got *Error
			if !errors.As(err, &got) {
				t.Fatalf("Build(%s) = %s, %v; want an *Error", tt.body, tok.Payload, err)
			}
			if got.Status != tt.wantStatus || got.Code != tt.wantCode {
				t.Errorf("Build(%s) = %d %s (%s); want %d %s",
					tt.body, got.Status, got.Code, got.Message, tt.wantStatus, tt.wantCode)
			}
			if len(got.Message) < 20 || !strings.HasSuffix(got.Message, ".") {
				t.Errorf("Message %q is not a clear sentence", got.Message)
			}
		})
	}
}

func TestBuildDuplicateMembers(t *testing.T) {
	tests := []struct {
		name      string
		body      string
		wantInMsg string
	}{
		{"claims twice", `{"claims":{},"claims":{}}`, `Member "claims" appears more than once in the request body.`},
		{"ttl twice", req("", `,"ttl":"5m","ttl":"15m"`), `Member "ttl" appears more than once in the request body.`},
		{"sub in claims", req(`,"sub":"someone-else"`, ""), `Member "sub" appears more than once in "claims".`},
		{"iss in claims", req(`,"iss":"`+issuer+`"`, ""), `"iss"`},
		{"escaped duplicate", req(`,"\u0073ub":"anon-123"`, ""), `Member "sub"`},
		{"same value twice", req(`,"x":1,"x":1`, ""), `Member "x"`},
		{"in a nested object", req(`,"profile":{"name":"a","age":3,"name":"b"}`, ""),
			`Member "name" appears more than once in "claims.profile".`},
		{"in an object in an array", req(`,"roles":[{"r":1},{"r":1,"r":2}]`, ""),
			`Member "r" appears more than once in "claims.roles[1]".`},
		{"deep", req(`,"a":{"b":[[{"c":{"d":1,"d":2}}]]}`, ""), `in "claims.a.b[0][0].c".`},
		{"empty names", req(`,"o":{"":1,"":2}`, ""), `Member "" appears`},
		{"before a syntax error", req(`,"x":1,"x":2`, "") + "garbage", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := testPolicy.Build([]byte(tt.body), testNow, onesReader{})
			var got *Error
			if !errors.As(err, &got) || got.Status != 400 {
				t.Fatalf("Build(%s) error = %v; want a 400", tt.body, err)
			}
			if tt.wantInMsg == "" {
				return // a syntax error further on may win
			}
			if got.Code != CodeDuplicateMember || !strings.Contains(got.Message, tt.wantInMsg) {
				t.Errorf("Build(%s) = %s %q; want %s naming %s",
					tt.body, got.Code, got.Message, CodeDuplicateMember, tt.wantInMsg)
			}
		})
	}
}

// minimalPayload is the payload of req("", ...) with the given iat, exp and jti.
func minimalPayload(iat, exp int64, jti string) string {
	return fmt.Sprintf(`{"aud":"openedx","exp":%d,"grant_type":"password","iat":%d,"iss":%q,"jti":%q,"sub":"anon-123"}`,
		exp, iat, issuer, jti)
}

func TestBuildAccepts(t *testing.T) {
	tests := []struct {
		name        string
		body        string
		wantPayload string
		wantIAT     int64
		wantEXP     int64
	}{
		{
			name: "Open edX claims get iat, exp and jti",
			body: `{"claims":` + openEdXClaims + `}`,
			wantPayload: `{"aud":"openedx","email_verified":true,"exp":1700003600,"filters":[],` +
				`"grant_type":"password","iat":1700000000,"is_restricted":false,"iss":"` + issuer + `",` +
				`"jti":"` + jtiOnes + `","preferred_username":"staff","scopes":["email","profile"],` +
				`"sub":"anon-123","version":"1.2.0"}`,
			wantIAT: nowUnix, wantEXP: nowUnix + 3600,
		},
		{
			// The LMS's create_jwt_for_user writes "grant_type": "" (no OAuth grant).
			name: "empty grant_type is signed as it is",
			body: `{"claims":{"iss":"` + issuer + `","aud":"openedx","sub":"anon-123","grant_type":""}}`,
			wantPayload: `{"aud":"openedx","exp":1700003600,"grant_type":"","iat":1700000000,"iss":"` + issuer + `",` +
				`"jti":"` + jtiOnes + `","sub":"anon-123"}`,
			wantIAT: nowUnix, wantEXP: nowUnix + 3600,
		},
		{
			name:        "ttl sets the lifetime",
			body:        req("", `,"ttl":"15m"`),
			wantPayload: minimalPayload(1700000000, 1700000900, jtiOnes),
			wantIAT:     nowUnix, wantEXP: nowUnix + 900,
		},
		{
			name:        "ttl before claims",
			body:        `{"ttl":"1m30s","claims":{"iss":"` + issuer + `","aud":"openedx","sub":"anon-123","grant_type":"password"}}`,
			wantPayload: minimalPayload(1700000000, 1700000090, jtiOnes),
			wantIAT:     nowUnix, wantEXP: nowUnix + 90,
		},
		{
			name:        "ttl equal to the maximum",
			body:        req("", `,"ttl":"1h"`),
			wantPayload: minimalPayload(1700000000, 1700003600, jtiOnes),
			wantIAT:     nowUnix, wantEXP: nowUnix + 3600,
		},
		{
			name:        "sub-second ttl gets one second",
			body:        req("", `,"ttl":"500ms"`),
			wantPayload: minimalPayload(1700000000, 1700000001, jtiOnes),
			wantIAT:     nowUnix, wantEXP: nowUnix + 1,
		},
		{
			name:        "fractional ttl is cut to whole seconds",
			body:        req("", `,"ttl":"90.9s"`),
			wantPayload: minimalPayload(1700000000, 1700000090, jtiOnes),
			wantIAT:     nowUnix, wantEXP: nowUnix + 90,
		},
		{
			name:        "explicit iat and exp are kept",
			body:        req(`,"iat":1699999990,"exp":1700000590`, ""),
			wantPayload: minimalPayload(1699999990, 1700000590, jtiOnes),
			wantIAT:     nowUnix - 10, wantEXP: nowUnix + 590,
		},
		{
			name:        "explicit lifetime equal to the maximum",
			body:        req(`,"iat":1700000000,"exp":1700003600`, ""),
			wantPayload: minimalPayload(1700000000, 1700003600, jtiOnes),
			wantIAT:     nowUnix, wantEXP: nowUnix + 3600,
		},
		{
			name:        "iat within the clock skew",
			body:        req(`,"iat":1700000060,"exp":1700000660`, ""),
			wantPayload: minimalPayload(1700000060, 1700000660, jtiOnes),
			wantIAT:     nowUnix + 60, wantEXP: nowUnix + 660,
		},
		{
			name:        "exp one second ahead",
			body:        req(`,"iat":1699999000,"exp":1700000001`, ""),
			wantPayload: minimalPayload(1699999000, 1700000001, jtiOnes),
			wantIAT:     nowUnix - 1000, wantEXP: nowUnix + 1,
		},
		{
			name:        "whole-valued iat and exp in other forms are written as integers",
			body:        req(`,"iat":1.7e9,"exp":1700000600.000`, ""),
			wantPayload: minimalPayload(1700000000, 1700000600, jtiOnes),
			wantIAT:     nowUnix, wantEXP: nowUnix + 600,
		},
		{
			name:        "jti is kept",
			body:        req(`,"jti":"my-id"`, ""),
			wantPayload: minimalPayload(1700000000, 1700003600, "my-id"),
			wantIAT:     nowUnix, wantEXP: nowUnix + 3600,
		},
		{
			name: "second allowed issuer and an audience array",
			body: `{"claims":{"iss":"https://lms.example.com/oauth2","aud":["openedx","ecommerce"],"sub":"s","grant_type":"jwt-bearer"}}`,
			wantPayload: `{"aud":["openedx","ecommerce"],"exp":1700003600,"grant_type":"jwt-bearer","iat":1700000000,` +
				`"iss":"https://lms.example.com/oauth2","jti":"` + jtiOnes + `","sub":"s"}`,
			wantIAT: nowUnix, wantEXP: nowUnix + 3600,
		},
		{
			name: "nested claims and numbers pass through exactly",
			body: req(`,"nbf":1699999999.25,"big":12345678901234567890,"neg":-0.0,"exp10":1E+2,`+
				`"float":1.50,"profile":{"z":[1,{"y":null,"x":true}],"a":{}},"list":[],"obj":{}`, ""),
			wantPayload: `{"aud":"openedx","big":12345678901234567890,"exp":1700003600,"exp10":1E+2,"float":1.50,` +
				`"grant_type":"password","iat":1700000000,"iss":"` + issuer + `","jti":"` + jtiOnes + `",` +
				`"list":[],"nbf":1699999999.25,"neg":-0.0,"obj":{},"profile":{"a":{},"z":[1,{"x":true,"y":null}]},` +
				`"sub":"anon-123"}`,
			wantIAT: nowUnix, wantEXP: nowUnix + 3600,
		},
		{
			name: "strings are re-encoded by keyd",
			body: req(`,"html":"<a href=\"x\">&amp;</a>","esc":"\u00e9\/\t\u0001\u001f","astral":"\ud83d\ude00",`+
				`"sep":"`+"\u2028"+`","raw":"é😀"`, ""),
			wantPayload: `{"astral":"😀","aud":"openedx","esc":"é/\t\u0001\u001f","exp":1700003600,` +
				`"grant_type":"password","html":"<a href=\"x\">&amp;</a>","iat":1700000000,"iss":"` + issuer + `",` +
				`"jti":"` + jtiOnes + `","raw":"é😀","sep":"\u2028","sub":"anon-123"}`,
			wantIAT: nowUnix, wantEXP: nowUnix + 3600,
		},
		{
			name: "white space everywhere",
			body: " {\n\t\"claims\" : { \"iss\" : \"" + issuer + "\" , \"aud\" : [ \"openedx\" ] ,\r\n" +
				" \"sub\":\"anon-123\", \"grant_type\":\"password\" } , \"ttl\" : \"1m\" } \n",
			wantPayload: `{"aud":["openedx"],"exp":1700000060,"grant_type":"password","iat":1700000000,` +
				`"iss":"` + issuer + `","jti":"` + jtiOnes + `","sub":"anon-123"}`,
			wantIAT: nowUnix, wantEXP: nowUnix + 60,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := testPolicy.Build([]byte(tt.body), testNow, onesReader{})
			if err != nil {
				t.Fatalf("Build(%s) error = %v", tt.body, err)
			}
			if got := string(tok.Payload); got != tt.wantPayload {
				t.Errorf("Payload:\n got %s\nwant %s", got, tt.wantPayload)
			}
			if got, want := tok.IssuedAt, time.Unix(tt.wantIAT, 0).UTC(); !got.Equal(want) || got.Location() != time.UTC {
				t.Errorf("IssuedAt = %v, want %v", got, want)
			}
			if got, want := tok.ExpiresAt, time.Unix(tt.wantEXP, 0).UTC(); !got.Equal(want) || got.Location() != time.UTC {
				t.Errorf("ExpiresAt = %v, want %v", got, want)
			}
		})
	}
}

func TestBuildNestingLimit(t *testing.T) {
	// The body and the claims are the first two levels.
	nested := func(levels int) []byte {
		return []byte(req(`,"x":`+strings.Repeat("[", levels)+strings.Repeat("]", levels), ""))
	}
	if _, err := testPolicy.Build(nested(strictjson.MaxDepth-2), testNow, onesReader{}); err != nil {
		t.Errorf("claims nested %d levels deep: %v", strictjson.MaxDepth-2, err)
	}
	_, err := testPolicy.Build(nested(strictjson.MaxDepth-1), testNow, onesReader{})
	if e, ok := err.(*Error); !ok || e.Status != 400 || e.Code != CodeInvalidJSON {
		t.Errorf("claims nested %d levels deep: error = %v, want a 400 %s", strictjson.MaxDepth-1, err, CodeInvalidJSON)
	}
}

func TestBuildMessagesNameTheMember(t *testing.T) {
	long := strings.Repeat("é", 100)
	tests := []struct {
		body string
		want string
	}{
		{req("", `,"header":{}`), `Member "header" is not allowed in the request body; only "claims" and "ttl" are.`},
		{req("", `,"`+long+`":1`), `Member "` + strings.Repeat("é", 32) + `"... is not allowed`},
		{req(`,"o":{"`+long+`":1,"`+long+`":2}`, ""), `Member "` + strings.Repeat("é", 32) + `"... appears more than once in "claims.o".`},
		{req(`,"iat":1`, ""), `Claims "iat" and "exp" must be given together or not at all.`},
		{reqWithout("sub", ""), `Claim "sub" is required.`},
		{reqWithout("grant_type", `,"grant_type":1`), `Claim "grant_type" must be a string (it may be empty).`},
		{reqWithout("iss", `,"iss":"https://evil.example"`), `Claim "iss" "https://evil.example" is not an issuer keyd signs for; accepted: `},
		{req("", `,"ttl":"2h"`), `The ttl 2h0m0s is longer than the maximum token lifetime of 1h0m0s.`},
		{`{"claims":{"x":"\q"}}`, `The request body is not valid JSON: invalid escape in a string at offset 16.`},
		{`{"claims":{"x":"` + "\xff" + `"}}`, `The request body is not valid JSON: invalid UTF-8 at offset 16.`},
	}
	for _, tt := range tests {
		_, err := testPolicy.Build([]byte(tt.body), testNow, onesReader{})
		e, ok := err.(*Error)
		if !ok || !strings.Contains(e.Message, tt.want) {
			t.Errorf("Build(%.60s...) error = %v; want a message with %s", tt.body, err, tt.want)
		}
	}
}

// TestBuildConcurrent runs Build from several goroutines, which share the
// parser pool; run it with -race.
func TestBuildConcurrent(t *testing.T) {
	bodies := [][]byte{
		[]byte(`{"claims":` + openEdXClaims + `}`),
		[]byte(req(`,"x":{"b":[1,2,{"c":"\u00e9"}],"a":null}`, `,"ttl":"1m"`)),
		[]byte(req(`,"x":{"a":1,"a":2}`, "")),
	}
	want := make([]string, len(bodies))
	for i, body := range bodies {
		tok, err := testPolicy.Build(body, testNow, onesReader{})
		want[i] = fmt.Sprint(string(tok.Payload), err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for n := range 200 {
				i := (g + n) % len(bodies)
				tok, err := testPolicy.Build(bodies[i], testNow, onesReader{})
				if got := fmt.Sprint(string(tok.Payload), err); got != want[i] {
					t.Errorf("concurrent Build = %s, want %s", got, want[i])
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestBuildLogFields(t *testing.T) {
	tok, err := testPolicy.Build([]byte(req(`,"jti":"id-1"`, "")), testNow, onesReader{})
	if err != nil {
		t.Fatal(err)
	}
	if tok.JTI != "id-1" || tok.Sub != "anon-123" || tok.GrantType != "password" {
		t.Errorf("JTI, Sub, GrantType = %q, %q, %q; want id-1, anon-123, password", tok.JTI, tok.Sub, tok.GrantType)
	}
	tok, err = testPolicy.Build([]byte(req("", "")), testNow, onesReader{})
	if err != nil {
		t.Fatal(err)
	}
	if tok.JTI != jtiOnes {
		t.Errorf("JTI = %q, want %q", tok.JTI, jtiOnes)
	}
}

func TestBuildRandomJTI(t *testing.T) {
	body := []byte(req("", ""))
	seen := map[string]bool{}
	for _, r := range []io.Reader{nil, nil, rand.Reader} {
		tok, err := testPolicy.Build(body, testNow, r)
		if err != nil {
			t.Fatal(err)
		}
		if len(tok.JTI) != 22 || strings.ContainsAny(tok.JTI, "+/=") || seen[tok.JTI] {
			t.Errorf("jti %q is not a fresh unpadded base64url encoding of 128 bits", tok.JTI)
		}
		seen[tok.JTI] = true
	}
}

func TestBuildRandFailure(t *testing.T) {
	_, err := testPolicy.Build([]byte(req("", "")), testNow, bytes.NewReader(make([]byte, 8)))
	var e *Error
	if err == nil || errors.As(err, &e) {
		t.Fatalf("Build with a short rand: error = %v; want a server error, not an *Error", err)
	}
	// A caller-supplied jti needs no randomness.
	if _, err := testPolicy.Build([]byte(req(`,"jti":"x"`, "")), testNow, bytes.NewReader(nil)); err != nil {
		t.Errorf("Build with a jti and no randomness: %v", err)
	}
}

func TestBuildDoesNotModifyBody(t *testing.T) {
	body := []byte(`{"claims":` + openEdXClaims + `}`)
	orig := bytes.Clone(body)
	tok, err := testPolicy.Build(body, testNow, onesReader{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(body, orig) {
		t.Error("Build modified the body")
	}
	body[len(`{"claims":{"iss":"`)] = 'X'
	if bytes.Contains(tok.Payload, []byte("Xttp")) {
		t.Error("Payload shares memory with the body")
	}
}

func TestErrorString(t *testing.T) {
	e := &Error{Status: 422, Code: CodeInvalidClaim, Message: `Claim "sub" is required.`}
	if got, want := e.Error(), `claims: invalid_claim: Claim "sub" is required.`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestNumericDate(t *testing.T) {
	tests := []struct {
		lit    string
		want   int64
		wantOK bool
	}{
		{"0", 0, true},
		{"-0", 0, true},
		{"1700000000", 1700000000, true},
		{"-1700000000", -1700000000, true},
		{"1.7e9", 1700000000, true},
		{"1.7E+9", 1700000000, true},
		{"1700000000.000", 1700000000, true},
		{"17000000000e-1", 1700000000, true},
		{"0.0017e12", 1700000000, true},
		{"-1.5e1", -15, true},
		{"0e5", 0, true},
		{"0.000e-99999", 0, true},
		{"9007199254740991", 1<<53 - 1, true},
		{"9007199254740991.0", 1<<53 - 1, true},
		{"9007199254740992", 0, false},
		{"9.007199254740992e15", 0, false},
		{"1e16", 0, false},
		{"12345678901234567890", 0, false},
		{"1e300", 0, false},
		{"1e99999999999", 0, false},
		{"1.5", 0, false},
		{"17000000005e-1", 0, false},
		{"1e-1", 0, false},
		{"1e-99999999999", 0, false},
	}
	for _, tt := range tests {
		got, ok := numericDate(tt.lit)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("numericDate(%s) = %d, %t; want %d, %t", tt.lit, got, ok, tt.want, tt.wantOK)
		}
	}
}

func BenchmarkBuild(b *testing.B) {
	body := []byte(`{"claims":` + openEdXClaims + `,"ttl":"15m"}`)
	for _, bm := range []struct {
		name string
		rand io.Reader
	}{{"fixed-rand", onesReader{}}, {"crypto-rand", rand.Reader}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := testPolicy.Build(body, testNow, bm.rand); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

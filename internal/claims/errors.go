package claims

import (
	"fmt"
	"net/http"
	"strconv"
)

// Error is a decoding or policy failure of a sign request. Status is 400 for a
// malformed request and 422 for claims that break the token policy; Code is a
// short snake_case code and Message one clear sentence for the client.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return "claims: " + e.Code + ": " + e.Message }

// The codes of a 400: the request is malformed.
const (
	CodeInvalidJSON     = "invalid_json"        // not JSON, invalid UTF-8, trailing data, nested too deep
	CodeDuplicateMember = "duplicate_member"    // a member name twice in one object, at any depth
	CodeUnknownMember   = "unknown_member"      // a top-level member other than claims and ttl
	CodeInvalidRequest  = "invalid_request"     // body not an object, claims missing or not an object
	CodeInvalidTTL      = "invalid_ttl"         // ttl not a positive duration string
	CodeInvalidTimes    = "invalid_time_claims" // iat/exp not paired, given with ttl, or not numbers
)

// The codes of a 422: the claims break the token policy.
const (
	CodeInvalidClaim      = "invalid_claim"      // a required claim missing, empty or of the wrong type
	CodeIssuerNotAllowed  = "issuer_not_allowed" // iss is not one of the configured issuers
	CodeLifetimeTooLong   = "lifetime_too_long"  // ttl or exp - iat above the maximum token lifetime
	CodeTokenExpired      = "token_expired"      // exp is not in the future
	CodeIssuedInTheFuture = "iat_in_future"      // iat is later than now plus the clock skew
)

func malformed(code, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: code, Message: fmt.Sprintf(format, args...)}
}

func refused(code, format string, args ...any) *Error {
	return &Error{Status: http.StatusUnprocessableEntity, Code: code, Message: fmt.Sprintf(format, args...)}
}

// quote quotes a caller-supplied name for a message, cut short if long.
func quote(s string) string {
	const limit = 64
	if len(s) > limit {
		cut := limit
		for cut > 0 && s[cut]&0xc0 == 0x80 { // do not split a UTF-8 sequence
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}

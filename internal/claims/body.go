package claims

import (
	"slices"
	"strconv"
	"strings"

	"github.com/openedx-keyd/keyd/internal/strictjson"
)

// Body is a request body decoded as strictly as a sign request: one JSON
// object in valid UTF-8, no member name twice in any object at any depth, and
// every top-level member name one the route allows, compared exactly (so
// "EMERGENCY" is not "emergency"). Every keyd route that takes a body decodes
// it with DecodeBody.
type Body struct {
	members []strictjson.Member // sorted by name, names unique
}

// DecodeBody decodes body strictly (see Body). Every refusal is an *Error with
// status 400: CodeInvalidJSON, CodeDuplicateMember, CodeInvalidRequest (not an
// object) or CodeUnknownMember (a top-level name not in allowed).
func DecodeBody(body []byte, allowed ...string) (Body, error) {
	v, err := strictjson.Parse(body)
	if err != nil {
		return Body{}, jsonError(err)
	}
	if v.Kind != strictjson.Object {
		return Body{}, malformed(CodeInvalidRequest, "The request body must be a JSON object.")
	}
	for _, m := range v.Members {
		if !slices.Contains(allowed, m.Name) {
			return Body{}, malformed(CodeUnknownMember,
				"Member %s is not allowed in the request body; only %s.", quote(m.Name), allowedNames(allowed))
		}
	}
	return Body{members: v.Members}, nil
}

// allowedNames lists names for a message: `"a" is`, `"a" and "b" are`,
// `"a", "b" and "c" are`.
func allowedNames(names []string) string {
	switch len(names) {
	case 0:
		return "an empty object is"
	case 1:
		return quote(names[0]) + " is"
	}
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = quote(n)
	}
	return strings.Join(q[:len(q)-1], ", ") + " and " + q[len(q)-1] + " are"
}

// get returns the member name, or nil when absent.
func (b Body) get(name string) *strictjson.Value {
	i, ok := slices.BinarySearchFunc(b.members, name, func(m strictjson.Member, n string) int { return strings.Compare(m.Name, n) })
	if !ok {
		return nil
	}
	return &b.members[i].Value
}

// Has reports whether the body has the member name.
func (b Body) Has(name string) bool { return b.get(name) != nil }

// Bool returns the member name, which must be true or false; absent is
// false. Any other value (null included) is a 400 CodeInvalidRequest.
func (b Body) Bool(name string) (bool, error) {
	v := b.get(name)
	switch {
	case v == nil || v.Kind == strictjson.False:
		return false, nil
	case v.Kind == strictjson.True:
		return true, nil
	}
	return false, malformed(CodeInvalidRequest, "Member %s must be true or false.", quote(name))
}

// String returns the member name, which must be a string; absent is "". Any
// other value (null included) is a 400 CodeInvalidRequest.
func (b Body) String(name string) (string, error) {
	v := b.get(name)
	switch {
	case v == nil:
		return "", nil
	case v.Kind == strictjson.String:
		return v.Text, nil
	}
	return "", malformed(CodeInvalidRequest, "Member %s must be a string.", quote(name))
}

// PositiveInt returns the member name, which must be a positive integer
// written without fraction or exponent; absent is 0. Any other value (null
// included) is a 400 CodeInvalidRequest.
func (b Body) PositiveInt(name string) (int, error) {
	v := b.get(name)
	if v == nil {
		return 0, nil
	}
	if v.Kind == strictjson.Number {
		if n, err := strconv.Atoi(v.Text); err == nil && n > 0 {
			return n, nil
		}
	}
	return 0, malformed(CodeInvalidRequest, "Member %s must be a positive integer.", quote(name))
}

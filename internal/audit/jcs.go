package audit

import (
	"slices"

	"github.com/openedx-keyd/keyd/internal/strictjson"
)

// canonicalJSON returns the RFC 8785 (JSON Canonicalization Scheme) form of
// the JSON text data. A top-level object member named drop (when not empty)
// is left out, which is how an event's hash excludes the hash itself.
// Invalid UTF-8, duplicate member names, integers beyond ±2^53 and trailing
// data are errors.
func canonicalJSON(data []byte, drop string) ([]byte, error) {
	v, err := strictjson.Parse(data)
	if err != nil {
		return nil, err
	}
	if v.Kind == strictjson.Object && drop != "" {
		v.Members = slices.DeleteFunc(v.Members, func(m strictjson.Member) bool { return m.Name == drop })
	}
	return strictjson.AppendCanonical(make([]byte, 0, len(data)), &v)
}

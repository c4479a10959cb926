package claims

import (
	"encoding/json"
	"testing"
)

func BenchmarkTmpStdlibUnmarshalMarshal(b *testing.B) {
	body := []byte(`{"claims":` + openEdXClaims + `,"ttl":"15m"}`)
	b.ReportAllocs()
	for b.Loop() {
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(m); err != nil {
			b.Fatal(err)
		}
	}
}

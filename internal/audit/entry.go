package audit

// DecodeEvent reads one entry of a Store kept outside this package (Vault's
// KV audit store) as strictly as the file store reads a line: a JSON object
// with exactly the members of an Event, each of the right type, and
// well-formed field values. Whether its hash matches is for Verify to say.
func DecodeEvent(raw []byte) (Event, error) { return decodeEvent(raw) }

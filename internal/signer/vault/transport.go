package vault

import (
	"net/http"
	"time"
)

// Connection pool of the transport under the Router. Every Vault client keyd
// makes (its own and the clones that carry a caller's token) shares one
// Router and so one transport, whose idle pool must hold as many
// connections as keyd has Vault calls in flight to one node, or each burst
// opens new ones (on TLS, a handshake each): the Vault client library's
// default keeps GOMAXPROCS+1 (3 on 2 cores).
//
// keyd's calls in flight to a node: per caller lane (token, version,
// algorithm) up to maxSenders transit calls, plus the one shared
// authorization lookup of each caller (see Authorize), plus keyd's own
// lifecycle reads. idleConnsPerHost holds that for 8 callers with their
// authorizations renewing at once; beyond it keyd still works, and reuses
// what fits.
const (
	idleConnsPerHost = 64
	// idleConnTimeout closes a connection unused this long: below Vault's
	// own idle timeout (http_idle_timeout, 5 min), so keyd, not Vault,
	// closes it, and never in the middle of a request.
	idleConnTimeout = 2 * time.Minute
)

// pooled sets up t, the Vault client library's default transport (TLS
// settings and HTTP/2 already configured by api.DefaultConfig), for reuse
// by every client of hosts addresses: an idle pool sized as above,
// keep-alive, and HTTP/2 over TLS where Vault offers it (ALPN "h2": one
// connection then carries every call in flight).
func pooled(rt http.RoundTripper, hosts int) http.RoundTripper {
	t, ok := rt.(*http.Transport)
	if !ok {
		return rt
	}
	t.DisableKeepAlives = false
	t.MaxIdleConnsPerHost = idleConnsPerHost
	t.MaxIdleConns = idleConnsPerHost * max(hosts, 1)
	t.IdleConnTimeout = idleConnTimeout
	t.ForceAttemptHTTP2 = true
	return t
}

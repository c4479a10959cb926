package vault

import (
	"crypto/sha256"
	"sync"
	"time"
)

// cache is a small map with expiry, bounded to max entries, keyed by a
// SHA-256 hash (of a caller's token, never the token itself).
type cache[V any] struct {
	mu  sync.Mutex
	max int
	m   map[[32]byte]cacheEntry[V]
}

type cacheEntry[V any] struct {
	v     V
	until time.Time
}

func newCache[V any](max int) *cache[V] {
	return &cache[V]{max: max, m: make(map[[32]byte]cacheEntry[V])}
}

func hashKey(parts ...string) [32]byte {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (c *cache[V]) get(k [32]byte, now time.Time) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[k]
	if !ok || !now.Before(e.until) {
		var zero V
		return zero, false
	}
	return e.v, true
}

func (c *cache[V]) put(k [32]byte, v V, until, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for key, e := range c.m {
			if !now.Before(e.until) {
				delete(c.m, key)
			}
		}
		for key := range c.m { // still full: drop arbitrary entries
			if len(c.m) < c.max {
				break
			}
			delete(c.m, key)
		}
	}
	c.m[k] = cacheEntry[V]{v: v, until: until}
}

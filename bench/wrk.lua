-- wrk script shared by every HTTP row of bench/run.
--   WRK_METHOD     GET (default) or POST
--   WRK_BODY_FILE  file whose bytes are the request body (POST)
-- Headers (Authorization, X-Vault-Token, Content-Type) come from wrk -H.
-- done() prints one machine-readable line that bench/run parses:
--   WRK_RESULT requests=N duration_us=N rps=N p50_us=N p99_us=N non2xx=N socket_errors=N

wrk.method = os.getenv("WRK_METHOD") or "GET"

local body_file = os.getenv("WRK_BODY_FILE")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "WRK_RESULT requests=%d duration_us=%d rps=%.1f p50_us=%d p99_us=%d non2xx=%d socket_errors=%d\n",
    summary.requests, summary.duration,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50.0), latency:percentile(99.0),
    e.status, e.connect + e.read + e.write + e.timeout))
end

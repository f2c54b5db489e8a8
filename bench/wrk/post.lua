-- POST one fixed body to every request and print a JSON summary when done.
--
--   wrk ... -s post.lua URL -- BODY_FILE ['Header: value' ...]
--
-- The body is read once per thread in init(), so wrk builds a single request
-- and replays it: no per-request Lua (a response() hook would make wrk pay
-- for every answer and risk being the bottleneck). wrk counts a status above
-- 399 in summary.errors.status; the harness checks each target's answer
-- (status and content) before every run, so 1xx/3xx cannot hide there.

function init(args)
  local file = assert(io.open(args[1], "rb"))
  wrk.method = "POST"
  wrk.body = file:read("*a")
  file:close()
  for i = 2, #args do
    local name, value = args[i]:match("^([^:]+):%s*(.*)$")
    wrk.headers[name] = value
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,' ..
    '"errors_timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max))
end

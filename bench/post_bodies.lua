-- wrk script for bench/serve_classic.py: POSTs JSON bodies read from a file (one body a
-- line), cycling through them, and prints one JSON line of results at the end.
--
--   wrk -c1 -t1 -d10s -s post_bodies.lua http://127.0.0.1:8000/classify/classic -- bodies.jsonl

local bodies = {}
local next_body = 1

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then bodies[#bodies + 1] = line end
  end
  if #bodies == 0 then error("no bodies in " .. tostring(args[1])) end
end

function request()
  local body = bodies[next_body]
  next_body = next_body % #bodies + 1
  return wrk.format("POST", nil, { ["Content-Type"] = "application/json" }, body)
end

-- Latencies are in microseconds; wrk counts any status >= 400 in errors.status.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "mean_us": %.1f, "errors": {"connect": %d, "read": %d, "write": %d, ' ..
    '"status": %d, "timeout": %d}}\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean,
    e.connect, e.read, e.write, e.status, e.timeout))
end

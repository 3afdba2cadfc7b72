-- wrk script for bench/soak.py: POSTs prepared requests read from a file (one a line:
-- PATH, a tab, the JSON body), cycling through them, counts every status, and prints one
-- JSON line of results at the end.
--
--   wrk -t1 -c64 -d60s -s soak.lua http://127.0.0.1:8000 -- requests.tsv

local requests = {}
local next_request = 1
statuses = {}
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(args[1]) do
    local path, body = line:match("^([^\t]+)\t(.*)$")
    if path then
      requests[#requests + 1] = wrk.format("POST", path, { ["Content-Type"] = "application/json" }, body)
    end
  end
  if #requests == 0 then error("no requests in " .. tostring(args[1])) end
end

function request()
  local r = requests[next_request]
  next_request = next_request % #requests + 1
  return r
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

-- Latencies are in microseconds.
function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      merged[status] = (merged[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(merged) do parts[#parts + 1] = string.format('"%d": %d', status, n) end
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "max_us": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, "statuses": {%s}}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.max, e.connect, e.read, e.write, e.timeout, table.concat(parts, ", ")))
end

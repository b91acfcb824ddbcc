-- wrk script: prints one machine-readable line with throughput and latency percentiles
-- (wrk's own --latency output has no p95). With COOKIES=N in the environment, requests
-- cycle through N session cookies (fl_session=user1..N), as N clients with affinity would.

local cookies = tonumber(os.getenv("COOKIES") or "0")
local requests = {}
local n = 0

function init(args)
  for i = 1, cookies do
    requests[i] = wrk.format("GET", "/", { ["Cookie"] = "fl_session=user" .. i })
  end
end

if cookies > 0 then
  function request()
    n = n + 1
    return requests[(n % cookies) + 1]
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT rps=%.0f p50=%.2f p95=%.2f p99=%.2f requests=%d errors=%d non2xx=%d\n",
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    summary.requests, e.connect + e.read + e.write + e.timeout, e.status))
end

-- wrk script for bench/http_guard.py.
--
-- Arguments after `--`: a file of requests, one per line as
--   METHOD <tab> PATH <tab> COOKIE <tab> BODY
-- (empty fields allowed), and the mean pause in milliseconds before each request
-- (0 for an unpaced run). Each thread cycles through the requests from its own
-- offset, so every connection mixes orgs. The summary is printed as one JSON line.
--
-- Paced pauses are drawn from an exponential distribution, so requests arrive as
-- independent clients' would. A fixed pause would keep every connection in step:
-- all of them would fire at once, again and again, and the latency measured would
-- be that of a burst of the whole connection count, not of the mean rate.

local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("offset", threads * 7919)
end

local requests = {}
local count = 0
local index = 0
local pause = 0

local function split(line)
  local fields = {}
  for field in (line .. "\t"):gmatch("([^\t]*)\t") do
    fields[#fields + 1] = field
  end
  return fields
end

local function format(fields)
  local headers = {}
  if fields[3] ~= "" then
    headers["Cookie"] = fields[3]
  end
  local body = nil
  if fields[4] ~= nil and fields[4] ~= "" then
    headers["Content-Type"] = "application/json"
    body = fields[4]
  end
  return wrk.format(fields[1], fields[2], headers, body)
end

function init(args)
  for line in io.lines(args[1]) do
    count = count + 1
    requests[count] = format(split(line))
  end
  pause = tonumber(args[2] or "0")
  index = offset % count
  math.randomseed(offset)
end

function request()
  index = index % count + 1
  return requests[index]
end

function delay()
  if pause == 0 then
    return 0
  end
  return math.floor(-math.log(1 - math.random()) * pause + 0.5)
end

function done(summary, latency, _)
  local e = summary.errors
  print(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
      .. '"max_us": %d, "status_errors": %d, "socket_errors": %d}',
    summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(99), latency.max, e.status,
    e.connect + e.read + e.write + e.timeout))
end

-- wrk script: send pre-signed Twilio webhooks from a list, in order, and check each answer.
-- Arguments (after --): the list file (path TAB signature TAB form body, one a line), the number
-- of wrk threads (thread i sends lines i, i+n, i+2n ...), and a marker every good answer holds.
-- Prints one line "BENCH_JSON {...}" with counts and latency percentiles (microseconds).

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

local requests = {}
local index = 0
bad = 0
wrapped = 0
local marker = ""

function init(args)
  local file, nthreads = args[1], tonumber(args[2])
  marker = args[3] or ""
  local line_no = 0
  for line in io.lines(file) do
    if line_no % nthreads == id then
      local path, signature, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
      table.insert(requests, wrk.format("POST", path, {
        ["Content-Type"] = "application/x-www-form-urlencoded",
        ["X-Twilio-Signature"] = signature,
      }, body))
    end
    line_no = line_no + 1
  end
end

function request()
  index = index + 1
  if index > #requests then
    index = 1
    wrapped = wrapped + 1
  end
  return requests[index]
end

function response(status, headers, body)
  if status ~= 200 or (marker ~= "" and not string.find(body, marker, 1, true)) then
    bad = bad + 1
  end
end

function done(summary, latency, requests)
  local total_bad, total_wrapped = 0, 0
  for _, thread in ipairs(threads) do
    total_bad = total_bad + thread:get("bad")
    total_wrapped = total_wrapped + thread:get("wrapped")
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"bad":%d,"wrapped":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), e.connect, e.read, e.write, e.status, e.timeout, total_bad,
    total_wrapped))
end

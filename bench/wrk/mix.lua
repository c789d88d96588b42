-- wrk script: replay a pre-generated list of VoP requests.
--
--   VOP_BENCH_REQUESTS=bench/out/requests.jsonl wrk -t1 -c64 -d10s -s bench/wrk/mix.lua URL
--   wrk -t1 -c64 -d10s -s bench/wrk/mix.lua URL -- bench/out/requests.jsonl
--
-- The file holds one JSON request body per line. Every request gets a fresh UUID-shaped
-- X-Request-ID and an X-Request-Timestamp of the current second (UTC). Each thread starts at its
-- own offset in the list and cycles through it.
--
-- VOP_BENCH_TOKEN, when set, is sent on every request as "Authorization: Bearer <token>" (from the
-- environment, so the token never shows in wrk's command line).
--
-- Status codes are counted in a response() callback (exact non-2xx count plus one sample body per
-- status). Set VOP_BENCH_NO_RESPONSE_HOOK=1 to leave the callback out; wrk then only counts
-- statuses >= 400 (summary.errors.status), which costs the load generator less.
--
-- done() prints one machine-readable line: "WRK_RESULT " followed by a JSON object with
-- requests, duration_s, rps, latency percentiles in microseconds (p50, p90, p99, p99_9), non_2xx,
-- socket_errors (connect + read + write + timeout), their breakdown and per-status counts.

local PATH = os.getenv("VOP_BENCH_PATH") or "/vop/v1/payee-verifications"

local threads = {}
local thread_counter = 0

function setup(thread)
  thread_counter = thread_counter + 1
  thread:set("thread_id", thread_counter)
  table.insert(threads, thread)
end

local bodies = {}
local n_bodies = 0
local position = 1
-- Globals (not locals): done() reads them from each thread with thread:get().
statuses = {}
samples = {}
non_2xx = 0

local function read_bodies(path)
  local file, err = io.open(path, "rb")
  if not file then
    error("mix.lua: cannot open request file " .. tostring(path) .. ": " .. tostring(err))
  end
  for line in file:lines() do
    if #line > 0 then
      n_bodies = n_bodies + 1
      bodies[n_bodies] = line
    end
  end
  file:close()
  if n_bodies == 0 then
    error("mix.lua: request file " .. path .. " has no lines")
  end
end

function init(args)
  local path = args[1] or os.getenv("VOP_BENCH_REQUESTS")
  if not path then
    error("mix.lua: give the request file as `-- FILE` or in VOP_BENCH_REQUESTS")
  end
  read_bodies(path)
  local id = thread_id or 1
  -- wrk starts each thread before it sets up the next, so the thread count is not known here:
  -- spread the start offsets by the golden ratio instead.
  position = math.floor(((id - 1) * 0.6180339887 % 1) * n_bodies) + 1
  math.randomseed(os.time() * 1000 + id * 7919 + math.floor(os.clock() * 1e6))
end

local function request_id()
  return string.format(
    "%08x-%04x-4%03x-%04x-%06x%06x",
    math.random(0, 0x7fffffff), math.random(0, 0xffff), math.random(0, 0xfff),
    0x8000 + math.random(0, 0x3fff), math.random(0, 0xffffff), math.random(0, 0xffffff)
  )
end

local headers = { ["Content-Type"] = "application/json" }
local token = os.getenv("VOP_BENCH_TOKEN")
if token ~= nil and #token > 0 then
  headers["Authorization"] = "Bearer " .. token
end

function request()
  local body = bodies[position]
  position = position + 1
  if position > n_bodies then position = 1 end
  headers["X-Request-ID"] = request_id()
  headers["X-Request-Timestamp"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
  return wrk.format("POST", PATH, headers, body)
end

if os.getenv("VOP_BENCH_NO_RESPONSE_HOOK") ~= "1" then
  function response(status, _, body)
    local key = tostring(status)
    statuses[key] = (statuses[key] or 0) + 1
    if status < 200 or status > 299 then
      non_2xx = non_2xx + 1
      if samples[key] == nil then
        samples[key] = string.sub(body or "", 1, 400)
      end
    end
  end
end

-- Minimal JSON encoding for the result line (strings, numbers, booleans, flat/nested tables).
local function json_string(s)
  s = string.gsub(s, '[%c"\\]', function(c)
    if c == '"' then return '\\"' end
    if c == "\\" then return "\\\\" end
    return string.format("\\u%04x", string.byte(c))
  end)
  return '"' .. s .. '"'
end

local function json(value)
  local kind = type(value)
  if kind == "table" then
    local parts = {}
    for k, v in pairs(value) do
      table.insert(parts, json_string(tostring(k)) .. ":" .. json(v))
    end
    return "{" .. table.concat(parts, ",") .. "}"
  elseif kind == "string" then
    return json_string(value)
  elseif kind == "number" then
    if value ~= value or value == math.huge or value == -math.huge then return "null" end
    return string.format("%.17g", value)
  elseif kind == "boolean" then
    return value and "true" or "false"
  end
  return "null"
end

function done(summary, latency, _)
  local hooked = os.getenv("VOP_BENCH_NO_RESPONSE_HOOK") ~= "1"
  local total_non_2xx = 0
  local all_statuses = {}
  local all_samples = {}
  for _, t in ipairs(threads) do
    total_non_2xx = total_non_2xx + (t:get("non_2xx") or 0)
    local st = t:get("statuses") or {}
    for k, v in pairs(st) do all_statuses[k] = (all_statuses[k] or 0) + v end
    local sm = t:get("samples") or {}
    for k, v in pairs(sm) do
      if all_samples[k] == nil then all_samples[k] = v end
    end
  end
  if not hooked then total_non_2xx = summary.errors.status end
  local e = summary.errors
  local duration_s = summary.duration / 1e6
  local result = {
    requests = summary.requests,
    bytes = summary.bytes,
    duration_s = duration_s,
    rps = duration_s > 0 and summary.requests / duration_s or 0,
    latency_us = {
      min = latency.min, max = latency.max, mean = latency.mean, stdev = latency.stdev,
      p50 = latency:percentile(50), p90 = latency:percentile(90),
      p99 = latency:percentile(99), p99_9 = latency:percentile(99.9),
    },
    non_2xx = total_non_2xx,
    status_hook = hooked,
    socket_errors = e.connect + e.read + e.write + e.timeout,
    errors = { connect = e.connect, read = e.read, write = e.write, timeout = e.timeout, status = e.status },
    statuses = all_statuses,
    samples = all_samples,
  }
  io.write("WRK_RESULT " .. json(result) .. "\n")
end

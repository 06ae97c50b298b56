-- wrk script: POSTs pre-built OTLP protobuf bodies, a different one each request, and gives every
-- request its own trace ids: each body's trace ids start A6 E7 00 00 (bench/make-payloads.py), and the
-- two zero bytes are replaced by a per-request counter, so tail sampling and the service graph see new
-- traces as in production rather than the same 128 bodies' traces again and again.
-- Usage: wrk ... -s bench/rotate.lua URL -- LIST_FILE   (LIST_FILE: one body path per line)
local bodies = {}
local index = 0
local counter = 0

function init(args)
  for path in io.lines(args[1]) do
    local file = assert(io.open(path, "rb"))
    bodies[#bodies + 1] = file:read("*a")
    file:close()
  end
  -- Each wrk thread starts at a different body and counter.
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  index = math.random(#bodies)
  counter = math.random(0, 65535)
end

-- A byte as a gsub replacement ("%" must be doubled there).
local function literal(byte)
  if byte == 37 then return "%%" end
  return string.char(byte)
end

function request()
  index = index % #bodies + 1
  counter = (counter + 1) % 65536
  -- Field 1 (trace_id), 16 bytes: 0A 10 A6 E7 00 00 ...
  local stamp = "\10\16\166\231" .. literal(math.floor(counter / 256)) .. literal(counter % 256)
  local body = string.gsub(bodies[index], "\10\16\166\231%z%z", stamp)
  return wrk.format("POST", "/v1/traces", { ["Content-Type"] = "application/x-protobuf" }, body)
end

-- wrk script: POSTs pre-built OTLP protobuf bodies, a different one each request, and gives every
-- request its own trace ids: each body's trace ids start A6 E7 00 00 (bench/make-payloads.py), and the
-- two zero bytes become a per-request counter, so tail sampling and the service graph see new traces as
-- in production rather than the same 128 bodies' traces again and again. Each body is cut at its trace
-- ids once, at start; a request only joins the pieces with the new stamp, so wrk stays far faster than
-- the collectors it loads.
-- Usage: wrk ... -s bench/rotate.lua URL -- LIST_FILE   (LIST_FILE: one body path per line)
local marker = "\10\16\166\231\0\0"
local bodies = {}   -- per body: a list of pieces, the even ones to be replaced by the stamp
local index = 0
local counter = 0

function init(args)
  for path in io.lines(args[1]) do
    local file = assert(io.open(path, "rb"))
    local body = file:read("*a")
    file:close()
    local pieces = {}
    local start = 1
    while true do
      local at = string.find(body, marker, start, true)
      if not at then break end
      pieces[#pieces + 1] = string.sub(body, start, at - 1)
      pieces[#pieces + 1] = marker
      start = at + #marker
    end
    pieces[#pieces + 1] = string.sub(body, start)
    bodies[#bodies + 1] = pieces
  end
  -- Each wrk thread starts at a different body and counter.
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  index = math.random(#bodies)
  counter = math.random(0, 65535)
end

function request()
  index = index % #bodies + 1
  counter = (counter + 1) % 65536
  local stamp = "\10\16\166\231" .. string.char(math.floor(counter / 256), counter % 256)
  local pieces = bodies[index]
  for i = 2, #pieces - 1, 2 do pieces[i] = stamp end
  return wrk.format("POST", "/v1/traces", { ["Content-Type"] = "application/x-protobuf" }, table.concat(pieces))
end

-- wrk script: POSTs pre-built OTLP protobuf bodies, a different one each request, so trace ids vary.
-- Usage: wrk ... -s bench/rotate.lua URL -- LIST_FILE   (LIST_FILE: one body path per line)
local bodies = {}
local index = 0

function init(args)
  for path in io.lines(args[1]) do
    local file = assert(io.open(path, "rb"))
    bodies[#bodies + 1] = file:read("*a")
    file:close()
  end
  -- Each wrk thread starts at a different body.
  index = math.random(#bodies)
end

function request()
  index = index % #bodies + 1
  return wrk.format("POST", "/v1/traces", { ["Content-Type"] = "application/x-protobuf" }, bodies[index])
end

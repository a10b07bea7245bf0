-- wrk script: pop with a lease, then ack what was popped: every message costs two requests.
-- Usage: wrk ... -s bench/lua/pop_ack.lua URL -- QUEUE   (e.g. bench)
-- One Lua state per wrk thread serves all its connections: a popped id goes to a list, and the
-- next request any connection sends acks it. Empty pops are counted: the queue must be filled.
local queue
local ids = {}
local empty = 0

function init(args)
  queue = args[1] or "bench"
end

function request()
  local id = table.remove(ids)
  if id then
    return wrk.format("POST", "/queue/ack/" .. queue .. "/" .. id)
  end
  return wrk.format("GET", "/queue/pop/" .. queue .. "?visibility=30")
end

function response(status, headers, body)
  local id = body:match('"message":{"id":"([^"]+)"')
  if id then
    table.insert(ids, id)
  elseif body:find('"message":null', 1, true) then
    empty = empty + 1
  end
end

local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

-- Reported on a "Non-2xx" line, so bench/run.sh counts empty pops as errors of the round.
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + (t:get("empty") or 0) end
  if n > 0 then io.write(string.format("  Non-2xx or empty pops: %d\n", n)) end
end

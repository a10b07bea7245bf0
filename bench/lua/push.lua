-- wrk script: push a 100-byte JSON message.
-- Usage: wrk ... -s bench/lua/push.lua URL -- PATH   (e.g. /queue/push/bench)
local path
local body = '{"payload":"' .. string.rep("0123456789", 8) .. '","n":12345}'  -- 100 bytes
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  path = args[1] or "/queue/push/bench"
end

function request()
  return wrk.format("POST", path, headers, body)
end

-- wrk script: write a 100-byte value to a random key out of N.
-- Usage: wrk ... -s bench/lua/set.lua URL -- METHOD PATH_PREFIX [N]
--   mikcar: -- POST /kv/set/bench: 100000   →  POST /kv/set/bench:4711
--   webdis: -- PUT  /SET/bench:     100000   →  PUT  /SET/bench:4711 (body = value)
local method, prefix, keys

local value = string.rep("0123456789", 10)  -- 100 bytes
local headers = { ["Content-Type"] = "application/octet-stream" }

function init(args)
  method = args[1] or "POST"
  prefix = args[2] or "/kv/set/bench:"
  keys = tonumber(args[3] or "100000")
  -- Different threads/runs must not walk the same key sequence.
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16))
end

function request()
  return wrk.format(method, prefix .. math.random(0, keys - 1), headers, value)
end

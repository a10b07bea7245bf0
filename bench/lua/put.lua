-- wrk script: PUT a 1 MiB object to a random name out of N (each PUT replaces an object).
-- Usage: wrk ... -s bench/lua/put.lua URL -- PATH_PREFIX [N]
--   mikcar: -- /storage/object/put- 100   →  PUT /storage/object/put-42
--   nginx:  -- /put/put- 100              →  PUT /put/put-42 (WebDAV)
local prefix, names
local body = string.rep("0123456789abcdef", 65536)  -- 1 MiB
local headers = { ["Content-Type"] = "application/octet-stream" }

function init(args)
  prefix = args[1] or "/storage/object/put-"
  names = tonumber(args[2] or "100")
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16))
end

function request()
  return wrk.format("PUT", prefix .. math.random(0, names - 1), headers, body)
end

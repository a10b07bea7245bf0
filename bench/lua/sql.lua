-- wrk script: pgbench's select-only transaction through mikcar's /sql/query.
--   SELECT abalance FROM pgbench_accounts WHERE aid = $1, aid random in 1..100000 (scale 1)
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16))
end

function request()
  local body = '{"sql":"SELECT abalance FROM pgbench_accounts WHERE aid = $1","params":[' ..
               math.random(1, 100000) .. ']}'
  return wrk.format("POST", "/sql/query", headers, body)
end

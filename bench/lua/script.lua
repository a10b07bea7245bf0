-- wrk script: /sql/script and its /sql/batch equivalent on pgbench's accounts table.
--   wrk ... -s script.lua -- KIND    KIND = trivial | one | two | batch2
--   trivial  a script that touches no table:           return input.aid
--   one      one point select in a script:             sql.queryOne(SELECT … aid = $1)
--   two      two point selects in a script (one transaction)
--   batch2   the same two selects through /sql/batch (one transaction, no rows returned)
local headers = { ["Content-Type"] = "application/json" }
local kind = "trivial"
local select = "SELECT abalance FROM pgbench_accounts WHERE aid = $1"

function init(args)
  kind = args[1] or kind
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16))
end

function request()
  local a, b = math.random(1, 100000), math.random(1, 100000)
  local body, path
  if kind == "trivial" then
    path, body = "/sql/script", '{"script":"return input.aid","input":{"aid":' .. a .. '}}'
  elseif kind == "one" then
    path = "/sql/script"
    body = '{"script":"sql.queryOne(\\"' .. select .. '\\", [input.a])","input":{"a":' .. a .. '}}'
  elseif kind == "two" then
    path = "/sql/script"
    body = '{"script":"export default ({a, b}) => [sql.queryOne(\\"' .. select .. '\\", [a]), ' ..
           'sql.queryOne(\\"' .. select .. '\\", [b])]","input":{"a":' .. a .. ',"b":' .. b .. '}}'
  else
    path = "/sql/batch"
    body = '{"statements":[{"sql":"' .. select .. '","params":[' .. a .. ']},{"sql":"' .. select ..
           '","params":[' .. b .. ']}]}'
  end
  return wrk.format("POST", path, headers, body)
end

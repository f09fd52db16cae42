-- Expire a sale's reserved orders whose hold has run out (up to ARGV[3] of them):
-- the same move as settle.lua to 'expired', for every due order in one call.
--
-- KEYS: 1 sale hash, 2 per-user held hash, 3 orders hash, 4 holds zset, 5 order log stream
-- ARGV: 1 now (ms), 2 sale id, 3 max orders
-- Returns {order id, order record, ...} of the orders it expired.
local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(due) do
  redis.call('ZREM', KEYS[4], id)
  local raw = redis.call('HGET', KEYS[3], id)
  if raw then
    local st, q, e, c, k, u = string.match(raw, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
    if st == 'reserved' then
      local rec = 'expired|' .. q .. '|' .. e .. '|' .. c .. '|' .. k .. '|' .. u
      local qty = tonumber(q)
      redis.call('HSET', KEYS[3], id, rec)
      redis.call('HINCRBY', KEYS[1], 'remaining', qty)
      redis.call('HINCRBY', KEYS[1], 'expired', 1)
      if redis.call('HINCRBY', KEYS[2], u, -qty) <= 0 then
        redis.call('HDEL', KEYS[2], u)
      end
      redis.call('XADD', KEYS[5], '*', 'op', 'expired', 'o', id, 's', ARGV[2], 'at', ARGV[1])
      table.insert(out, id)
      table.insert(out, rec)
    end
  end
end
return out

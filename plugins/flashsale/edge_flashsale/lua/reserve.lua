-- One reservation attempt, atomically (Redis runs a script to completion before
-- anything else): idempotency, sale window, per-user limit, stock; then the
-- decrement, the order, its hold, its log entry and the idempotency record.
-- The same rules as inventory.decide() (the model test holds both to them).
--
-- KEYS: 1 sale hash, 2 per-user held hash, 3 orders hash, 4 holds zset,
--       5 idempotency record, 6 order log stream
-- ARGV: 1 user, 2 quantity, 3 key, 4 body, 5 order id, 6 now (ms),
--       7 idempotency ttl (s), 8 sale id
-- Returns {'dup', record} | {'no', reason, remaining} | {'ok', order id, expires (ms), remaining}
--
-- Records are '|'-separated with the free-form part last:
--   order:       status|quantity|expires|created|key|user
--   idempotency: A|order id|expires|remaining|sale id|quantity|body
--                R|reason|remaining|sale id|quantity|body
local rec = redis.call('GET', KEYS[5])
if rec then
  return {'dup', rec}
end
local m = redis.call('HMGET', KEYS[1], 'starts', 'ends', 'remaining', 'limit', 'hold')
if not m[1] or not m[3] then
  return {'no', 'unknown_sku', '-1'}
end
local now = tonumber(ARGV[6])
if now < tonumber(m[1]) then
  return {'no', 'not_started', m[3]}
end
if now >= tonumber(m[2]) then
  return {'no', 'ended', m[3]}
end
local qty = tonumber(ARGV[2])
local limit = tonumber(m[4])
if qty > limit then
  return {'no', 'over_limit', m[3]}
end
local remaining = tonumber(m[3])
local held = tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
local reason = false
if held + qty > limit then
  reason = 'limit_reached'
elseif remaining <= 0 then
  reason = 'sold_out'
elseif remaining < qty then
  reason = 'insufficient_stock'
end
if reason then
  redis.call('SET', KEYS[5], 'R|' .. reason .. '|' .. m[3] .. '|' .. ARGV[8] .. '|' .. ARGV[2] .. '|' .. ARGV[4],
             'EX', ARGV[7])
  return {'no', reason, m[3]}
end
local left = tostring(redis.call('HINCRBY', KEYS[1], 'remaining', -qty))
redis.call('HINCRBY', KEYS[2], ARGV[1], qty)
local expires = string.format('%d', now + tonumber(m[5]))
redis.call('HSET', KEYS[3], ARGV[5],
           'reserved|' .. ARGV[2] .. '|' .. expires .. '|' .. ARGV[6] .. '|' .. ARGV[3] .. '|' .. ARGV[1])
redis.call('ZADD', KEYS[4], expires, ARGV[5])
redis.call('XADD', KEYS[6], '*', 'op', 'reserve', 'o', ARGV[5], 's', ARGV[8], 'u', ARGV[1],
           'q', ARGV[2], 'e', expires, 'c', ARGV[6], 'k', ARGV[3])
redis.call('SET', KEYS[5],
           'A|' .. ARGV[5] .. '|' .. expires .. '|' .. left .. '|' .. ARGV[8] .. '|' .. ARGV[2] .. '|' .. ARGV[4],
           'EX', ARGV[7])
return {'ok', ARGV[5], expires, left}

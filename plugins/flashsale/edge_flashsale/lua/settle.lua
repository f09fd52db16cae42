-- Move a reserved order exactly once: pay, cancel, or (past its hold) expire.
-- Payment racing expiry has one outcome because both run here, one at a time;
-- only a move away from 'reserved' returns stock, so it comes back at most once.
--
-- KEYS: 1 sale hash, 2 per-user held hash, 3 orders hash, 4 holds zset, 5 order log stream
-- ARGV: 1 order id, 2 action ('pay' | 'cancel'), 3 now (ms), 4 sale id
-- Returns the order's state afterwards, or 'unknown'.
local raw = redis.call('HGET', KEYS[3], ARGV[1])
if not raw then
  return 'unknown'
end
local st, q, e, c, k, u = string.match(raw, '^([^|]*)|([^|]*)|([^|]*)|([^|]*)|([^|]*)|(.*)$')
if st ~= 'reserved' then
  return st
end
local target
if tonumber(ARGV[3]) >= tonumber(e) then
  target = 'expired'
elseif ARGV[2] == 'pay' then
  target = 'paid'
else
  target = 'cancelled'
end
redis.call('HSET', KEYS[3], ARGV[1], target .. '|' .. q .. '|' .. e .. '|' .. c .. '|' .. k .. '|' .. u)
redis.call('ZREM', KEYS[4], ARGV[1])
local qty = tonumber(q)
if target == 'paid' then
  redis.call('HINCRBY', KEYS[1], 'sold', qty)
else
  redis.call('HINCRBY', KEYS[1], 'remaining', qty)
  redis.call('HINCRBY', KEYS[1], target, 1)
  if redis.call('HINCRBY', KEYS[2], u, -qty) <= 0 then
    redis.call('HDEL', KEYS[2], u)
  end
end
redis.call('XADD', KEYS[5], '*', 'op', target, 'o', ARGV[1], 's', ARGV[4], 'at', ARGV[3])
return target

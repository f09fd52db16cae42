-- Move a reserved order exactly once: pay, cancel, or (past its hold) expire.
-- Payment racing expiry has one outcome because both run here, one at a time;
-- only a move away from 'reserved' returns stock, so it comes back at most once.
--
-- KEYS: 1 sale hash, 2 per-user held hash, 3 orders hash, 4 holds zset, 5 order log stream
-- ARGV: 1 order id, 2 action ('pay' | 'cancel' | 'expire'), 3 now (ms), 4 sale id
-- Returns the order's state afterwards, or 'unknown'.
local raw = redis.call('HGET', KEYS[3], ARGV[1])
if not raw then
  return 'unknown'
end
local o = cjson.decode(raw)
if o.st ~= 'reserved' then
  return o.st
end
local now = tonumber(ARGV[3])
local target
if now >= o.e then
  target = 'expired'
elseif ARGV[2] == 'pay' then
  target = 'paid'
elseif ARGV[2] == 'cancel' then
  target = 'cancelled'
else
  return o.st -- an early 'expire': not due yet
end
o.st = target
redis.call('HSET', KEYS[3], ARGV[1], cjson.encode(o))
redis.call('ZREM', KEYS[4], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'reserved', -o.q)
if target == 'paid' then
  redis.call('HINCRBY', KEYS[1], 'sold', o.q)
else
  redis.call('HINCRBY', KEYS[1], 'remaining', o.q)
  redis.call('HINCRBY', KEYS[1], target, 1)
  local left = redis.call('HINCRBY', KEYS[2], o.u, -o.q)
  if left <= 0 then
    redis.call('HDEL', KEYS[2], o.u)
  end
end
redis.call('XADD', KEYS[5], '*', 'op', target, 'o', ARGV[1], 's', ARGV[4], 'at', ARGV[3])
return target

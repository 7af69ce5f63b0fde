-- Reference for the module benchmark: Centrifuge's publish-with-history steps (§6.2 of the
-- protocol notes) as one Lua script, so GYRE.PUBLISH can be compared with the scripted approach.
-- KEYS[1] = channel. ARGV: 1 payload, 2 history size, 3 history ttl (s), 4 meta ttl (s),
-- 5 candidate epoch. Keys use the prefix "gyrelua" so they never mix with the module's keys.
local channel = KEYS[1]
local stream_key = 'gyrelua.stream.' .. channel
local meta_key = 'gyrelua.stream.meta.' .. channel

local epoch = redis.call('hget', meta_key, 'e')
if not epoch then
  epoch = ARGV[5]
  redis.call('hset', meta_key, 'e', epoch)
end
local offset = redis.call('hincrby', meta_key, 's', 1)
if ARGV[4] ~= '0' then
  redis.call('expire', meta_key, ARGV[4])
end
if offset == 1 then
  redis.call('del', stream_key)
end
redis.call('xadd', stream_key, 'MAXLEN', ARGV[2], offset, 'd', ARGV[1])
redis.call('expire', stream_key, ARGV[3])
redis.call('publish', 'gyrelua.client.' .. channel,
  '__p1:' .. offset .. ':' .. epoch .. '__' .. ARGV[1])
return {offset, epoch}

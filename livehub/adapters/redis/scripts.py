"""Lua scripts of the Redis presence registry: each change is atomic, so counts stay exact.

Keys (``P`` is the configured prefix, default ``livehub:``; one Redis, not Redis Cluster):

- ``P alive:<node>``           the node's heartbeat, a string with a TTL
- ``P nodes``                  sorted set of nodes that registered (score: last heartbeat, ms)
- ``P room:<room>:members``    hash peer -> JSON ``{"node", "name", "role"}``
- ``P room:<room>:counts``     hash node -> members of the room on that node
- ``P node:<node>:rooms``      set of rooms where the node has members (for reaping)
- ``P node:<node>:peers``      set of the node's peers (for reaping)
- ``P peers``                  hash peer -> node (where a direct send goes)

Channels: ``P room:<room>`` (broadcasts and presence notices of a room) and ``P node:<node>``
(direct sends to the node's peers).

All scripts take no KEYS and build key names from ``ARGV[1]`` (the prefix): fine on one Redis
(or a Sentinel-managed primary), not on Redis Cluster.
"""

from __future__ import annotations

#: ARGV: prefix, node, room, peer, info JSON. Returns 1 if the peer became a member here.
JOIN = """
local p, node, room, peer, info = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local members = p .. 'room:' .. room .. ':members'
local counts = p .. 'room:' .. room .. ':counts'
local old = redis.call('HGET', members, peer)
if old then
  local o = cjson.decode(old)
  if o.node == node then
    redis.call('HSET', members, peer, info)
    return 0
  end
  if redis.call('HINCRBY', counts, o.node, -1) <= 0 then redis.call('HDEL', counts, o.node) end
end
redis.call('HSET', members, peer, info)
redis.call('HINCRBY', counts, node, 1)
redis.call('SADD', p .. 'node:' .. node .. ':rooms', room)
redis.call('HSET', p .. 'peers', peer, node)
redis.call('SADD', p .. 'node:' .. node .. ':peers', peer)
return 1
"""

#: ARGV: prefix, node, room, peer, "1" if the peer is in no room of this node any more.
LEAVE = """
local p, node, room, peer, gone = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local members = p .. 'room:' .. room .. ':members'
local counts = p .. 'room:' .. room .. ':counts'
if gone == '1' and redis.call('HGET', p .. 'peers', peer) == node then
  redis.call('HDEL', p .. 'peers', peer)
  redis.call('SREM', p .. 'node:' .. node .. ':peers', peer)
end
local old = redis.call('HGET', members, peer)
if not old then return 0 end
if cjson.decode(old).node ~= node then return 0 end
redis.call('HDEL', members, peer)
if redis.call('HINCRBY', counts, node, -1) <= 0 then
  redis.call('HDEL', counts, node)
  redis.call('SREM', p .. 'node:' .. node .. ':rooms', room)
end
return 1
"""

_REAP_BODY = """
local out = {}
for _, room in ipairs(redis.call('SMEMBERS', p .. 'node:' .. node .. ':rooms')) do
  local members = p .. 'room:' .. room .. ':members'
  local all = redis.call('HGETALL', members)
  for i = 1, #all, 2 do
    local o = cjson.decode(all[i + 1])
    if o.node == node then
      redis.call('HDEL', members, all[i])
      out[#out + 1] = room
      out[#out + 1] = all[i]
      out[#out + 1] = o.name
      out[#out + 1] = o.role
    end
  end
  redis.call('HDEL', p .. 'room:' .. room .. ':counts', node)
end
for _, peer in ipairs(redis.call('SMEMBERS', p .. 'node:' .. node .. ':peers')) do
  if redis.call('HGET', p .. 'peers', peer) == node then redis.call('HDEL', p .. 'peers', peer) end
end
redis.call('DEL', p .. 'node:' .. node .. ':rooms', p .. 'node:' .. node .. ':peers')
redis.call('ZREM', p .. 'nodes', node)
return out
"""

#: ARGV: prefix, node. Removes every trace of the node (its own presence: a node rebuilding or
#: leaving); returns [room, peer, name, role, ...].
REAP = "local p, node = ARGV[1], ARGV[2]" + _REAP_BODY

#: ARGV: prefix, node. :data:`REAP` of another node, if it is dead: its heartbeat key is gone
#: and it is still registered. The check and the removal are one script, so a node that comes
#: back (its heartbeat writes ``alive:`` first) is never reaped after it rebuilt its presence,
#: and of several survivors exactly one reaps it. Returns false if the node was not reaped.
REAP_DEAD = (
    """
local p, node = ARGV[1], ARGV[2]
if redis.call('EXISTS', p .. 'alive:' .. node) == 1 then return false end
if not redis.call('ZSCORE', p .. 'nodes', node) then return false end
"""
    + _REAP_BODY
)

#: ARGV: prefix, room. Members of the room on live nodes.
COUNT = """
local p, room = ARGV[1], ARGV[2]
local counts = redis.call('HGETALL', p .. 'room:' .. room .. ':counts')
local total = 0
for i = 1, #counts, 2 do
  if redis.call('EXISTS', p .. 'alive:' .. counts[i]) == 1 then
    total = total + tonumber(counts[i + 1])
  end
end
return total
"""

#: ARGV: prefix, room. [peer, info JSON, ...] of members on live nodes, in no particular order.
MEMBERS = """
local p, room = ARGV[1], ARGV[2]
local all = redis.call('HGETALL', p .. 'room:' .. room .. ':members')
local alive = {}
local out = {}
for i = 1, #all, 2 do
  local node = cjson.decode(all[i + 1]).node
  if alive[node] == nil then alive[node] = redis.call('EXISTS', p .. 'alive:' .. node) == 1 end
  if alive[node] then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
return out
"""

#: ARGV: prefix, peer, payload. Publishes to the peer's node channel; returns the node or false.
SEND = """
local p, peer, payload = ARGV[1], ARGV[2], ARGV[3]
local node = redis.call('HGET', p .. 'peers', peer)
if not node then return false end
redis.call('PUBLISH', p .. 'node:' .. node, payload)
return node
"""

#: KEYS: lock. ARGV: owner, ttl ms. Extends the lock if ``owner`` holds it; 1 if so.
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

#: KEYS: lock. ARGV: owner. Deletes the lock if ``owner`` holds it.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

"""Lua scripts of the Redis presence registry: each change is atomic, so counts stay exact.

Keys (``P`` is the configured prefix, default ``livehub:``; one Redis, not Redis Cluster):

- ``P alive:<node>``           the node's heartbeat, a string with a TTL
- ``P nodes``                  sorted set of nodes that registered (score: last heartbeat, ms)
- ``P reaped:<node>``          the node was reaped as dead (its members announced gone); taken
  by the node's next rebuild of its presence
- ``P room:<room>:members``    hash peer -> JSON ``{"node", "name", "role"}``
- ``P room:<room>:counts``     hash node -> members of the room on that node
- ``P room:<room>:seq``        hash node -> sequence number of the node's latest presence
  message in the room (while the node has members there): a :data:`MEMBERS` snapshot tells
  each node's place in its stream of deltas
- ``P node:<node>:rooms``      set of rooms where the node has members (for reaping)
- ``P node:<node>:peers``      set of the node's peers (for reaping)
- ``P peers``                  hash peer -> node (where a direct send to an unknown node goes)

Channels: ``P room:<room>`` (broadcasts, presence deltas and notices of a room) and
``P node:<node>`` (direct sends to the node's peers).

:data:`JOIN` and :data:`LEAVE` publish the presence delta themselves (the node signs it
beforehand: Lua cannot), so the change and the message are one atomic step, in order with the
node's other messages on the room's channel.

All scripts take no KEYS and build key names from ``ARGV[1]`` (the prefix): fine on one Redis
(or a Sentinel-managed primary), not on Redis Cluster.
"""

from __future__ import annotations

#: Records ``seq`` as the node's latest in the room unless a later one is there (a rebuild may
#: have written it before queued operations land). Seqs are decimal strings: kept as given (a
#: Lua number would print large ones in exponent form), compared as numbers (exact below 2^53).
_SEQ = """
local seqs = p .. 'room:' .. room .. ':seq'
local cur = redis.call('HGET', seqs, node)
local later = cur and tonumber(cur) > tonumber(seq)
"""

#: ARGV: prefix, node, room, peer, info JSON, seq, message. Writes the membership and the
#: node's seq, then publishes ``message`` (the signed delta) on the room's channel; an empty
#: message is a quiet join (a rebuild: it publishes one notice per room afterwards). Returns 1
#: if the peer became a member here.
JOIN = (
    """
local p, node, room, peer, info = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local seq, message = ARGV[6], ARGV[7]
local members = p .. 'room:' .. room .. ':members'
local counts = p .. 'room:' .. room .. ':counts'
"""
    + _SEQ
    + """
if not later then redis.call('HSET', seqs, node, seq) end
if message ~= '' then redis.call('PUBLISH', p .. 'room:' .. room, message) end
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
)

#: ARGV: prefix, node, room, peer, "1" if the peer is in no room of this node any more, seq,
#: "1" if the node has no member left in the room (its seq there is removed), message (the
#: signed delta, published on the room's channel). Returns 1 if the peer was a member here.
LEAVE = (
    """
local p, node, room, peer, gone = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local seq, emptied, message = ARGV[6], ARGV[7], ARGV[8]
local members = p .. 'room:' .. room .. ':members'
local counts = p .. 'room:' .. room .. ':counts'
"""
    + _SEQ
    + """
if not later then
  if emptied == '1' then redis.call('HDEL', seqs, node) else redis.call('HSET', seqs, node, seq) end
end
redis.call('PUBLISH', p .. 'room:' .. room, message)
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
)

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
  redis.call('HDEL', p .. 'room:' .. room .. ':seq', node)
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
#: and of several survivors exactly one reaps it. Leaves ``P reaped:<node>`` for a day: the
#: node, back, announces its members again (their ``peer-left`` went out). Returns false if
#: the node was not reaped.
REAP_DEAD = (
    """
local p, node = ARGV[1], ARGV[2]
if redis.call('EXISTS', p .. 'alive:' .. node) == 1 then return false end
if not redis.call('ZSCORE', p .. 'nodes', node) then return false end
redis.call('SET', p .. 'reaped:' .. node, '1', 'EX', 86400)
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

#: ARGV: prefix, room. A snapshot of the room on live nodes: ``{[peer, info JSON, ...],
#: [node, seq, ...]}``, members in no particular order, and each node's latest presence seq.
MEMBERS = """
local p, room = ARGV[1], ARGV[2]
local all = redis.call('HGETALL', p .. 'room:' .. room .. ':members')
local alive = {}
local function live(node)
  if alive[node] == nil then alive[node] = redis.call('EXISTS', p .. 'alive:' .. node) == 1 end
  return alive[node]
end
local out = {}
for i = 1, #all, 2 do
  if live(cjson.decode(all[i + 1]).node) then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
local seqs = redis.call('HGETALL', p .. 'room:' .. room .. ':seq')
local at = {}
for i = 1, #seqs, 2 do
  if live(seqs[i]) then
    at[#at + 1] = seqs[i]
    at[#at + 1] = seqs[i + 1]
  end
end
return {out, at}
"""

#: ARGV: prefix, peer, payload. Publishes to the peer's node channel; returns the node or false.
#: For a peer whose node the sender does not know (a kick); a known node gets a plain PUBLISH.
SEND = """
local p, peer, payload = ARGV[1], ARGV[2], ARGV[3]
local node = redis.call('HGET', p .. 'peers', peer)
if not node then return false end
redis.call('PUBLISH', p .. 'node:' .. node, payload)
return node
"""

#: KEYS: lock. ARGV: owner, ttl ms. Takes the lock for ``ttl`` ms if it is free, or extends it if
#: ``owner`` holds it (renewed, or taken by an earlier call whose reply was lost); 1 if held.
TAKE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""

#: KEYS: lock. ARGV: owner. Deletes the lock if ``owner`` holds it.
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

// What this browser remembers: the display name, owner tokens per room, the operator's API key.

const NAME_KEY = 'livehub.name';
const API_KEY = 'livehub.apiKey';
const OWNER_PREFIX = 'livehub.owner.';
const ownerKey = (roomId) => `${OWNER_PREFIX}${roomId}`;
/** The rooms whose owner token is kept, least recently used first, one a line: "<ms last
 * used> <roomId, URI-encoded>". */
const OWNERS_KEY = 'livehub.owners';
/** What is kept: the owner tokens of this many rooms at most, none unused for longer. */
export const MAX_OWNER_TOKENS = 50;
export const OWNER_TOKEN_MAX_AGE_MS = 30 * 24 * 3600 * 1000;

export function myName() {
  let name = localStorage.getItem(NAME_KEY);
  if (!name) {
    name = `guest-${Math.random().toString(36).slice(2, 6)}`;
    localStorage.setItem(NAME_KEY, name);
  }
  return name;
}

export function setMyName(name) {
  if (name) localStorage.setItem(NAME_KEY, name);
  return myName();
}

// Owner tokens: one key per room (livehub.owner.<roomId>, the token as it is), and an index of
// when each was last used (livehub.owners), so that what is kept stays bounded: a token goes
// when its room is gone or (public) ended, when the server refuses it (forgetOwnerToken), when
// it was not used for OWNER_TOKEN_MAX_AGE_MS, and the least recently used go beyond
// MAX_OWNER_TOKENS. A token stored before the index existed counts as the least recently used.

/** The index as [[roomId, ms], ...]; a damaged line is left out (its key is adopted again). */
function ownersIndex() {
  const list = [];
  for (const line of (localStorage.getItem(OWNERS_KEY) ?? '').split('\n')) {
    const match = /^(\d+) (\S+)$/.exec(line);
    if (!match) continue;
    try {
      list.push([decodeURIComponent(match[2]), Number(match[1])]);
    } catch {
      // not URI-encoded: not ours
    }
  }
  return list;
}

/** Write `list` back after dropping the stale and the least recently used beyond the bound;
 * every owner key not in it is adopted (first, as used now) or, when dropped, removed. */
function keepOwners(list, now = Date.now()) {
  const indexed = new Set(list.map(([roomId]) => roomId));
  const stored = [];
  for (let i = 0; i < localStorage.length; i++) {
    const key = localStorage.key(i);
    if (key?.startsWith(OWNER_PREFIX)) stored.push(key.slice(OWNER_PREFIX.length));
  }
  const present = new Set(stored);
  const adopted = stored.filter((roomId) => !indexed.has(roomId)).map((roomId) => [roomId, now]);
  const seen = new Set(); // a room listed twice (a damaged index): its last use counts
  const kept = [...adopted, ...list]
    .reverse()
    .filter(([roomId]) => !seen.has(roomId) && seen.add(roomId))
    .reverse()
    .filter(([roomId, used]) => present.has(roomId) && now - used <= OWNER_TOKEN_MAX_AGE_MS)
    .slice(-MAX_OWNER_TOKENS);
  const keep = new Set(kept.map(([roomId]) => roomId));
  for (const roomId of stored) if (!keep.has(roomId)) localStorage.removeItem(ownerKey(roomId));
  localStorage.setItem(OWNERS_KEY, kept.map(([roomId, used]) => `${used} ${encodeURIComponent(roomId)}`).join('\n'));
}

/** This browser's owner token of `roomId`, or null; `use`: this page acts as its owner now
 * (the token counts as used: kept longest). */
export function ownerToken(roomId, { use = false } = {}) {
  const token = localStorage.getItem(ownerKey(roomId));
  if (token !== null && use) touchOwner(roomId);
  return token;
}

function touchOwner(roomId) {
  keepOwners([...ownersIndex().filter(([id]) => id !== roomId), [roomId, Date.now()]]);
}

export function saveOwnerToken(roomId, token) {
  localStorage.setItem(ownerKey(roomId), token);
  touchOwner(roomId);
}

/** Forget `roomId`'s owner token: the room is gone or ended, or the server refused it. */
export function forgetOwnerToken(roomId) {
  if (localStorage.getItem(ownerKey(roomId)) === null) return; // none (any more)
  localStorage.removeItem(ownerKey(roomId));
  keepOwners(ownersIndex().filter(([id]) => id !== roomId));
}

/** Drop what is past the bounds (once per page load). */
export function pruneOwnerTokens() {
  keepOwners(ownersIndex());
}

/** The API key sent as a bearer token when creating rooms (servers with LIVEHUB_API_KEYS). */
export const apiKey = () => localStorage.getItem(API_KEY) ?? '';
export function saveApiKey(key) {
  if (key) localStorage.setItem(API_KEY, key);
  else localStorage.removeItem(API_KEY);
}

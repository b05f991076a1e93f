// What this browser remembers: the display name, owner tokens per room, the operator's API key.

const NAME_KEY = 'livehub.name';
const API_KEY = 'livehub.apiKey';
const ownerKey = (roomId) => `livehub.owner.${roomId}`;

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

export const ownerToken = (roomId) => localStorage.getItem(ownerKey(roomId));
export const saveOwnerToken = (roomId, token) => localStorage.setItem(ownerKey(roomId), token);

/** The API key sent as a bearer token when creating rooms (servers with LIVEHUB_API_KEYS). */
export const apiKey = () => localStorage.getItem(API_KEY) ?? '';
export function saveApiKey(key) {
  if (key) localStorage.setItem(API_KEY, key);
  else localStorage.removeItem(API_KEY);
}

// livehub web console: one page, two views chosen by the URL hash.
//   #/            lobby.js: the room list (paged, active rooms polled) and the create form
//   #/room/<id>   room.js: a room: the stage grid (the main stream and the guests' streams,
//                 WHEP from SRS), chat and members (livehub WebSocket), invitations to the
//                 stage (a guest publishes its camera to SRS over WHIP), moderation and, for
//                 the owner, go live from the camera (WHIP to SRS) and close the room.
//                 A private room's viewers open #/room/<id>?token=<viewer token>.
// ES modules served as they are: no build step. Everything said to livehub and SRS (REST,
// signaling, WHIP/WHEP) goes through the JavaScript SDK, /sdk/livehub-client.js (api.js): the
// same module any other frontend imports.

import { myName, pruneOwnerTokens, setMyName } from './identity.js';
import { lobbyView } from './lobby.js';
import { roomView } from './room.js';
import { errors } from './ui.js';

pruneOwnerTokens(); // owner tokens unused for long, or beyond the bound, go
const viewEl = document.getElementById('view');
const nameInput = document.getElementById('name-input');
nameInput.value = myName();
nameInput.title = 'Used when you join a room';
nameInput.addEventListener('change', () => { nameInput.value = setMyName(nameInput.value.trim()); });

let teardown = null;

function route() {
  teardown?.();
  teardown = null;
  errors.clearAll();
  viewEl.replaceChildren();
  const match = location.hash.match(/^#\/room\/([^/?#]+)/);
  teardown = match ? roomView(viewEl, decodeURIComponent(match[1])) : lobbyView(viewEl);
}
window.addEventListener('hashchange', route);
route();

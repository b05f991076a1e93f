// livehub web console: one page, two views chosen by the URL hash.
//   #/            room list (polled) and the create-room form
//   #/room/<id>   a room: player (WHEP from SRS), chat and members (livehub WebSocket),
//                 co-host calls (peer to peer through livehub signaling) and, for the
//                 owner, go live from the camera (WHIP to SRS) and close the room.
// No build step and no dependencies: plain DOM, fetch, WebSocket and RTCPeerConnection.

const POLL_MS = 2000;
const PLAYER_TIMEOUT_MS = 10000;
const NAME_KEY = 'livehub.name';
const ownerKey = (roomId) => `livehub.owner.${roomId}`;
const wsUrl = () => (location.protocol === 'https:' ? 'wss' : 'ws') + '://' + location.host + '/ws';

// ---------------------------------------------------------------- DOM helpers

/** h('div', {class: 'x', testid: 'y', onclick: f}, child, 'text', ...) */
function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'testid') el.dataset.testid = value;
    else if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key in el) el[key] = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

const viewEl = document.getElementById('view');
const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : '');

function statusBadge(status = 'unknown', reconnecting = false) {
  const text = reconnecting && status === 'live' ? 'live · reconnecting' : status;
  return h('span', { class: `badge badge-${status}`, testid: 'status-badge', dataset: { status } }, text);
}

function updateBadge(el, room) {
  const fresh = statusBadge(room.status, room.reconnecting);
  if (el.dataset.status !== fresh.dataset.status || el.textContent !== fresh.textContent) {
    el.className = fresh.className;
    el.dataset.status = fresh.dataset.status;
    el.textContent = fresh.textContent;
  }
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // navigator.clipboard needs a secure context; fall back to the old way.
    const area = h('textarea', { value: text, readOnly: true, class: 'offscreen' });
    document.body.append(area);
    area.select();
    const ok = document.execCommand('copy');
    area.remove();
    if (!ok) {
      errors.show('Copy failed: select the text and copy it by hand.', 'copy');
      return;
    }
  }
  const label = button.textContent;
  button.textContent = 'Copied';
  setTimeout(() => { button.textContent = label; }, 1500);
}

function copyField(label, value, testid, { secret = false } = {}) {
  const input = h('input', { value, readOnly: true, testid: `field-${testid}`, spellcheck: false });
  input.addEventListener('focus', () => input.select());
  return h('div', { class: `field${secret ? ' secret' : ''}` },
    h('label', {}, label),
    h('div', { class: 'field-row' },
      input,
      h('button', { type: 'button', class: 'copy', testid: `copy-${testid}`, onclick: (e) => copyText(value, e.currentTarget) }, 'Copy')));
}

/**
 * Wait until the peer connection has gathered its candidates (at most `ms`), so that the offer
 * sent to a WHIP/WHEP endpoint carries them: those endpoints take one offer and no trickle.
 */
function iceGathered(pc, ms = 2000) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== 'complete') return;
      pc.removeEventListener('icegatheringstatechange', done);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => { pc.removeEventListener('icegatheringstatechange', done); resolve(); }, ms);
    pc.addEventListener('icegatheringstatechange', done);
  });
}

// ---------------------------------------------------------------- error banner

const errors = {
  el: document.getElementById('errors'),
  items: new Map(),
  /** Show a message; a later message with the same key replaces it. */
  show(message, key = message) {
    this.items.get(key)?.remove();
    const item = h('div', { class: 'error-item', testid: 'error-message' },
      h('span', {}, message),
      h('button', { type: 'button', class: 'dismiss', title: 'Dismiss', onclick: () => this.clear(key) }, '×'));
    this.items.set(key, item);
    this.el.append(item);
    this.el.hidden = false;
  },
  clear(key) {
    this.items.get(key)?.remove();
    this.items.delete(key);
    this.el.hidden = this.items.size === 0;
  },
  clearAll() {
    for (const key of [...this.items.keys()]) this.clear(key);
  },
};

// ---------------------------------------------------------------- REST

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Call the livehub REST API; non-2xx answers become ApiError with the server's {error, code}. */
async function api(method, path, { body, token } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (token) headers.Authorization = `Bearer ${token}`;
  let res;
  try {
    res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, 'network_error', `cannot reach livehub (${err.message})`);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) {
    const message = data?.error ?? (text.trim().slice(0, 200) || res.statusText);
    throw new ApiError(res.status, data?.code ?? `http_${res.status}`, message);
  }
  return data;
}

const describe = (what, err) =>
  `${what}: ${err.message}` + (err.code ? ` [${err.code}${err.status ? `, HTTP ${err.status}` : ''}]` : '');

// ---------------------------------------------------------------- identity

const nameInput = document.getElementById('name-input');
function myName() {
  let name = localStorage.getItem(NAME_KEY);
  if (!name) {
    name = `guest-${Math.random().toString(36).slice(2, 6)}`;
    localStorage.setItem(NAME_KEY, name);
  }
  return name;
}
nameInput.value = myName();
nameInput.title = 'Used when you join a room';
nameInput.addEventListener('change', () => {
  const name = nameInput.value.trim();
  if (name) localStorage.setItem(NAME_KEY, name);
  nameInput.value = myName();
});

// ---------------------------------------------------------------- router

let teardown = null;

function route() {
  teardown?.();
  teardown = null;
  errors.clearAll();
  viewEl.replaceChildren();
  const match = location.hash.match(/^#\/room\/([^/?#]+)/);
  teardown = match ? roomView(viewEl, decodeURIComponent(match[1])) : listView(viewEl);
}
window.addEventListener('hashchange', route);
route();

// ---------------------------------------------------------------- list view

function listView(root) {
  document.title = 'livehub · rooms';
  let stopped = false;
  let timer = null;
  const rows = new Map(); // room id -> {tr, badge, viewers, players}

  const titleInput = h('input', { name: 'title', required: true, maxLength: 200, placeholder: 'Room title', testid: 'create-title' });
  const submit = h('button', { type: 'submit', testid: 'create-submit' }, 'Create room');
  const result = h('section', { class: 'card create-result', testid: 'create-result', hidden: true });
  const tbody = h('tbody', { testid: 'room-list' });
  const empty = h('p', { class: 'muted', testid: 'room-list-empty' }, 'No rooms yet. Create one above.');

  const form = h('form', { class: 'card create-form', testid: 'create-form', onsubmit: create },
    h('h2', {}, 'Create a room'),
    h('div', { class: 'field-row' }, titleInput, submit));

  root.append(form, result,
    h('section', { class: 'card' },
      h('h2', {}, 'Rooms'),
      h('table', { class: 'rooms' },
        h('thead', {}, h('tr', {}, h('th', {}, 'Room'), h('th', {}, 'Status'), h('th', { class: 'num' }, 'Viewers'),
          h('th', { class: 'num' }, 'Players'), h('th', {}, 'Created'))),
        tbody),
      empty));

  async function create(event) {
    event.preventDefault();
    const title = titleInput.value.trim();
    if (!title) return;
    submit.disabled = true;
    errors.clear('create');
    try {
      const room = await api('POST', '/api/rooms', { body: { title } });
      localStorage.setItem(ownerKey(room.id), room.ownerToken);
      showCreated(room);
      titleInput.value = '';
      refresh();
    } catch (err) {
      errors.show(describe('Could not create the room', err), 'create');
    } finally {
      submit.disabled = false;
    }
  }

  function showCreated(room) {
    const p = room.publish ?? {};
    const fields = [
      ['OBS server', p.obsServer, 'obs-server'],
      ['OBS stream key', p.obsStreamKey, 'stream-key'],
      ['RTMP URL (ffmpeg)', p.rtmpUrl, 'rtmp-url'],
      ['WHIP URL (WebRTC publish)', p.whipUrl, 'whip-url'],
      ['SRT URL', p.srtUrl, 'srt-url'],
    ].filter(([, value]) => value);
    result.replaceChildren(
      h('h2', {}, 'Room created: ', h('span', { testid: 'created-title' }, room.title)),
      h('p', {},
        h('a', { href: `#/room/${encodeURIComponent(room.id)}`, testid: 'created-room-link', class: 'button' }, 'Open the room page →')),
      h('p', { class: 'muted' }, 'In OBS: Settings → Stream → Service "Custom…", paste the server and the stream key. ',
        'Keep these values private: anyone with them can publish to this room.'),
      ...fields.map(([label, value, id]) => copyField(label, value, id, { secret: true })),
      copyField('Owner token', room.ownerToken, 'owner-token', { secret: true }),
      h('p', { class: 'muted' }, 'The owner token is saved in this browser, so this browser can go live and close the room. ',
        'Copy it if you want to manage the room from elsewhere.'));
    result.hidden = false;
  }

  function render(rooms) {
    const seen = new Set();
    rooms.forEach((room, index) => {
      seen.add(room.id);
      let row = rows.get(room.id);
      if (!row) {
        const badge = statusBadge(room.status, room.reconnecting);
        const viewers = h('span', { testid: 'viewer-count' });
        const players = h('span', { testid: 'player-count' });
        const link = h('a', { href: `#/room/${encodeURIComponent(room.id)}`, testid: 'room-link' });
        const owned = localStorage.getItem(ownerKey(room.id))
          ? h('span', { class: 'tag', title: 'You own this room (token saved in this browser)' }, 'owner') : null;
        const tr = h('tr', { testid: 'room-row', dataset: { roomId: room.id } },
          h('td', {}, link, ' ', owned), h('td', {}, badge),
          h('td', { class: 'num' }, viewers), h('td', { class: 'num' }, players),
          h('td', { class: 'muted' }, time(room.createdAt)));
        row = { tr, badge, viewers, players, link };
        rows.set(room.id, row);
      }
      row.link.textContent = room.title || room.id;
      updateBadge(row.badge, room);
      row.viewers.textContent = String(room.viewerCount ?? 0);
      row.players.textContent = String(room.playerCount ?? 0);
      row.tr.dataset.status = room.status;
      if (tbody.children[index] !== row.tr) tbody.insertBefore(row.tr, tbody.children[index] ?? null);
    });
    for (const [id, row] of rows) {
      if (!seen.has(id)) { row.tr.remove(); rows.delete(id); }
    }
    empty.hidden = rooms.length > 0;
  }

  async function refresh() {
    try {
      const rooms = await api('GET', '/api/rooms');
      if (stopped) return;
      render(Array.isArray(rooms) ? rooms : []);
      errors.clear('poll');
    } catch (err) {
      if (!stopped) errors.show(describe('Could not load the rooms', err), 'poll');
    }
  }

  async function poll() {
    await refresh();
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }
  poll();
  titleInput.focus();

  return () => { stopped = true; clearTimeout(timer); };
}

// ---------------------------------------------------------------- room view

function roomView(root, roomId) {
  document.title = 'livehub · room';
  let token = localStorage.getItem(ownerKey(roomId));
  let room = null;
  let publish = null; // owner only: {token, whipUrl, ...}
  let myPeerId = null;
  let ws = null;
  let closing = false; // we closed the socket on purpose: no reconnect
  let retryDelay = 1000;
  let retryTimer = null;
  const members = new Map(); // peerId -> {peerId, name, role}

  // --- layout
  const titleEl = h('h1', { testid: 'room-title' }, 'Loading…');
  const badge = statusBadge('loading');
  const viewersEl = h('span', { testid: 'viewer-count' }, '0');
  const playersEl = h('span', { testid: 'player-count' }, '0');
  const wsState = h('span', { class: 'ws-state', testid: 'ws-state' }, 'connecting…');

  const playerVideo = h('video', { testid: 'player-video', autoplay: true, playsInline: true, muted: true });
  const playerState = h('div', { class: 'player-state', testid: 'player-state' });
  const retryButton = h('button', { type: 'button', testid: 'player-retry', hidden: true, onclick: () => player.start({ manual: true }) }, 'Try again');
  const playerBox = h('section', { class: 'card player' },
    h('h2', {}, 'Stream'),
    h('div', { class: 'player-frame' }, playerVideo, h('div', { class: 'player-overlay' }, playerState, retryButton)));

  const ownerPanel = h('section', { class: 'card owner', testid: 'owner-panel', hidden: true });
  const localVideo = h('video', { testid: 'local-video', autoplay: true, playsInline: true, muted: true });
  const localCaption = h('figcaption', {}, 'You · camera off');
  const cameraState = h('p', { class: 'muted', testid: 'camera-state' }, 'Camera: not started (it starts when you call, answer or go live).');
  const tiles = h('div', { class: 'tiles', testid: 'call-tiles' },
    h('figure', { class: 'tile local' }, localVideo, localCaption));
  const callBox = h('section', { class: 'card calls' },
    h('h2', {}, 'Co-host call'),
    h('p', { class: 'muted' }, 'Call another member to talk peer to peer. Incoming calls are answered automatically.'),
    cameraState, tiles);

  const memberList = h('ul', { class: 'members', testid: 'member-list' });
  const chatLog = h('div', { class: 'chat-log', testid: 'chat-log' });
  const chatInput = h('input', { maxLength: 500, placeholder: 'Say something…', testid: 'chat-input', disabled: true, autocomplete: 'off' });
  const chatSend = h('button', { type: 'submit', testid: 'chat-send', disabled: true }, 'Send');

  root.append(h('div', { class: 'room-page', testid: 'room-page', dataset: { roomId } },
    h('div', { class: 'room-head' },
      h('a', { href: '#/', class: 'back' }, '← Rooms'),
      titleEl, badge,
      h('span', { class: 'stat' }, viewersEl, ' viewers'),
      h('span', { class: 'stat' }, playersEl, ' players'),
      wsState),
    h('div', { class: 'room-grid' },
      h('div', { class: 'main-col' }, playerBox, ownerPanel, callBox),
      h('div', { class: 'side-col' },
        h('section', { class: 'card' }, h('h2', {}, 'Members'), memberList),
        h('section', { class: 'card chat' }, h('h2', {}, 'Chat'), chatLog,
          h('form', { class: 'field-row', testid: 'chat-form', onsubmit: sendChat }, chatInput, chatSend))))));

  // --- room state

  const idleText = () => (token
    ? 'Not live yet: go live from the camera below, or publish with OBS or ffmpeg.'
    : 'Waiting for the host to go live.');

  function setRoom(next) {
    if (!next) return;
    const before = room?.status;
    room = { ...room, ...next };
    titleEl.textContent = room.title || room.id;
    document.title = `livehub · ${room.title || room.id}`;
    updateBadge(badge, room);
    viewersEl.textContent = String(room.viewerCount ?? 0);
    playersEl.textContent = String(room.playerCount ?? 0);
    if (room.status !== before) {
      if (room.status === 'live') player.start({ manual: true });
      else player.stop(room.status === 'ended' ? 'The room has ended.' : idleText());
      if (room.status === 'ended') publisher.stop();
    }
    renderOwner();
  }

  async function load() {
    try {
      setRoom(await api('GET', `/api/rooms/${encodeURIComponent(roomId)}`, { token }));
    } catch (err) {
      if (token && (err.status === 401 || err.status === 403)) {
        errors.show(describe('The saved owner token was refused: you are a viewer here', err), 'owner');
        token = null;
        return load();
      }
      if (err.status === 404) {
        root.replaceChildren(h('section', { class: 'card', testid: 'room-not-found' },
          h('h1', {}, 'Room not found'), h('p', {}, `There is no room "${roomId}". `, h('a', { href: '#/' }, 'Back to the rooms'))));
      }
      errors.show(describe('Could not load the room', err), 'load');
      return false;
    }
    publish = token ? room.publish ?? null : null;
    delete room.publish; // keep the secret in one place only
    if (token && !publish) {
      // livehub answers a wrong token with the public room, without `publish`.
      errors.show('The saved owner token is not valid for this room: you are a viewer here.', 'owner');
      token = null;
      renderOwner();
    }
    return true;
  }

  // --- owner panel (only shown with a valid owner token; viewers never get `publish`)

  let closeArmed = false;
  const goLiveButton = h('button', { type: 'button', testid: 'go-live-button', onclick: () => publisher.start() }, 'Go live from camera');
  const stopLiveButton = h('button', { type: 'button', testid: 'stop-live-button', onclick: () => publisher.stop() }, 'Stop publishing');
  const closeButton = h('button', { type: 'button', class: 'danger', testid: 'close-room-button', onclick: closeRoom });
  const publishState = h('p', { class: 'muted', testid: 'publish-state' });
  ownerPanel.append(h('h2', {}, 'Owner'), h('div', { class: 'actions' }, goLiveButton, stopLiveButton, closeButton), publishState);
  let obsShown = false;

  /** Bring the owner panel up to date (in place, so an opened <details> stays open). */
  function renderOwner() {
    ownerPanel.hidden = !token || !room;
    if (ownerPanel.hidden) return;
    const ended = room.status === 'ended';
    goLiveButton.disabled = ended || !publish?.whipUrl || publisher.active;
    stopLiveButton.hidden = !publisher.active;
    closeButton.disabled = ended;
    closeButton.textContent = closeArmed ? 'Click again to close the room' : 'Close room';
    publishState.textContent = publisher.state;
    if (publish && !obsShown) {
      obsShown = true;
      ownerPanel.append(h('details', { class: 'obs' },
        h('summary', {}, 'OBS / ffmpeg settings (private)'),
        copyField('OBS server', publish.obsServer, 'obs-server', { secret: true }),
        copyField('OBS stream key', publish.obsStreamKey, 'stream-key', { secret: true }),
        copyField('RTMP URL (ffmpeg)', publish.rtmpUrl, 'rtmp-url', { secret: true }),
        copyField('WHIP URL', publish.whipUrl, 'whip-url', { secret: true })));
    }
  }

  async function closeRoom() {
    if (!closeArmed) {
      closeArmed = true;
      renderOwner();
      setTimeout(() => { closeArmed = false; renderOwner(); }, 4000);
      return;
    }
    closeArmed = false;
    errors.clear('close');
    try {
      const res = await api('POST', `/api/rooms/${encodeURIComponent(roomId)}/close`, { token });
      setRoom(res?.room ?? { status: 'ended' });
    } catch (err) {
      errors.show(describe('Could not close the room', err), 'close');
    }
    renderOwner();
  }

  // --- camera (shared by the co-host calls and go-live)

  let cameraPromise = null;
  function getCamera() {
    cameraPromise ??= (async () => {
      if (!navigator.mediaDevices?.getUserMedia) {
        cameraState.textContent = 'No camera: this browser (or an insecure http:// page) has no getUserMedia. Calls are receive-only.';
        cameraState.dataset.state = 'none';
        return null;
      }
      let lastError = null;
      for (const constraints of [{ video: true, audio: true }, { video: true }]) {
        try {
          const stream = await navigator.mediaDevices.getUserMedia(constraints);
          localVideo.srcObject = stream;
          localCaption.textContent = 'You';
          cameraState.textContent = `Camera on${constraints.audio ? ' with microphone' : ' (no microphone)'}.`;
          cameraState.dataset.state = 'on';
          return stream;
        } catch (err) {
          lastError = err;
        }
      }
      cameraState.textContent = `No camera (${lastError.name}: ${lastError.message}). Calls are receive-only.`;
      cameraState.dataset.state = 'none';
      return null;
    })();
    return cameraPromise;
  }

  // --- player: WHEP from SRS, only while the room is live

  const player = {
    pc: null,
    generation: 0,
    attempts: 0, // automatic retries since the last manual start
    retryTimer: null,
    setState(state, text) {
      playerState.textContent = text;
      playerState.dataset.state = state;
      playerVideo.controls = state === 'playing';
      retryButton.hidden = !(state === 'unavailable' && room?.status === 'live');
    },
    async start({ manual = false } = {}) {
      this.stop();
      if (manual) this.attempts = 0;
      if (room?.status !== 'live') { this.setState('idle', idleText()); return; }
      const whep = room.playUrls?.whep;
      if (!whep) { this.setState('unavailable', 'Stream not available: the room has no WHEP URL.'); return; }
      const generation = ++this.generation;
      const stale = () => generation !== this.generation;
      this.setState('connecting', 'Connecting to the stream…');
      const pc = new RTCPeerConnection({ iceServers: [] });
      this.pc = pc;
      const stream = new MediaStream();
      pc.addTransceiver('video', { direction: 'recvonly' });
      pc.addTransceiver('audio', { direction: 'recvonly' });
      pc.ontrack = (e) => { stream.addTrack(e.track); playerVideo.srcObject = stream; };
      const fail = (reason) => {
        if (stale()) return;
        this.stop();
        // SRS may need a moment after on_publish before the stream plays: retry a few times.
        const retry = room?.status === 'live' && this.attempts < 3;
        this.setState('unavailable', `Stream not available: ${reason}.${retry ? ' Retrying…' : ''}`);
        if (retry) {
          this.attempts += 1;
          this.retryTimer = setTimeout(() => this.start(), 2000 * this.attempts);
        }
      };
      pc.onconnectionstatechange = () => {
        if (stale()) return;
        if (pc.connectionState === 'connected') { clearTimeout(timeout); this.setState('playing', ''); }
        else if (pc.connectionState === 'failed') fail('the media connection to SRS failed');
        else if (pc.connectionState === 'disconnected') this.setState('connecting', 'Connection interrupted, waiting…');
      };
      const timeout = setTimeout(() => fail('no media from SRS after 10 s'), PLAYER_TIMEOUT_MS);
      try {
        await pc.setLocalDescription(await pc.createOffer());
        await iceGathered(pc);
        if (stale()) return;
        let res;
        try {
          res = await fetch(whep, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
        } catch (err) {
          throw new Error(`cannot reach SRS at ${new URL(whep).host} (${err.message})`);
        }
        const answer = await res.text();
        if (res.status !== 201 && res.status !== 200) throw new Error(`SRS answered HTTP ${res.status} ${answer.trim().slice(0, 120)}`);
        if (stale()) return;
        this.location = res.headers.get('Location') ? new URL(res.headers.get('Location'), whep).href : null;
        await pc.setRemoteDescription({ type: 'answer', sdp: answer });
      } catch (err) {
        clearTimeout(timeout);
        fail(err.message);
      }
    },
    stop(text) {
      this.generation++;
      clearTimeout(this.retryTimer);
      this.pc?.close();
      this.pc = null;
      if (this.location) fetch(this.location, { method: 'DELETE' }).catch(() => {});
      this.location = null;
      playerVideo.srcObject = null;
      if (text) this.setState('idle', text);
    },
  };

  // --- publisher: WHIP to SRS from the camera (owner only)

  const publisher = {
    pc: null,
    location: null,
    active: false,
    state: 'Not publishing. Go live from the camera here, or publish with OBS / ffmpeg using the settings below.',
    set(state, active = this.active) {
      this.state = state;
      this.active = active;
      renderOwner();
    },
    async start() {
      if (!publish?.whipUrl) return;
      errors.clear('publish');
      this.set('Starting the camera…', true);
      const camera = await getCamera();
      const video = camera?.getVideoTracks() ?? [];
      if (!video.length) {
        this.set('Not publishing: no camera available.', false);
        errors.show('Cannot go live: no camera is available in this browser.', 'publish');
        return;
      }
      const pc = new RTCPeerConnection({ iceServers: [] });
      this.pc = pc;
      for (const track of camera.getTracks()) pc.addTransceiver(track, { direction: 'sendonly', streams: [camera] });
      pc.onconnectionstatechange = () => {
        if (this.pc !== pc) return;
        if (pc.connectionState === 'connected') this.set('Publishing from the camera. The room goes live when SRS accepts the stream.');
        if (pc.connectionState === 'failed') this.fail('the media connection to SRS failed');
      };
      try {
        await pc.setLocalDescription(await pc.createOffer());
        await iceGathered(pc);
        if (this.pc !== pc) return;
        this.set('Sending the offer to SRS…');
        let res;
        try {
          res = await fetch(publish.whipUrl, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
        } catch (err) {
          throw new Error(`cannot reach SRS at ${new URL(publish.whipUrl).host} (${err.message})`);
        }
        const answer = await res.text();
        if (res.status !== 201 && res.status !== 200) throw new Error(`SRS answered HTTP ${res.status} ${answer.trim().slice(0, 120)}`);
        if (this.pc !== pc) return;
        const loc = res.headers.get('Location');
        this.location = loc ? new URL(loc, publish.whipUrl).href : null;
        await pc.setRemoteDescription({ type: 'answer', sdp: answer });
        this.set('Connecting to SRS…');
      } catch (err) {
        this.fail(err.message);
      }
    },
    fail(reason) {
      this.stop();
      this.set(`Not publishing: ${reason}.`, false);
      errors.show(`Go live failed: ${reason}.`, 'publish');
    },
    stop() {
      if (this.location) fetch(this.location, { method: 'DELETE' }).catch(() => {});
      this.location = null;
      this.pc?.close();
      const was = this.pc;
      this.pc = null;
      if (was) this.set('Not publishing.', false);
    },
  };

  // --- co-host calls: one RTCPeerConnection per remote member

  const calls = new Map(); // peerId -> Call

  class Call {
    constructor(peerId) {
      this.peerId = peerId;
      this.chain = Promise.resolve(); // signaling for one call is handled strictly in order
      this.pending = []; // candidates that arrived before the remote description
      this.pc = new RTCPeerConnection({ iceServers: [] });
      this.remote = new MediaStream();
      this.video = h('video', { testid: 'remote-video', autoplay: true, playsInline: true, dataset: { peerId } });
      this.stateEl = h('span', { class: 'call-state', testid: 'call-state', dataset: { peerId } });
      this.unmute = h('button', { type: 'button', class: 'small', hidden: true, onclick: () => { this.video.muted = false; this.unmute.hidden = true; } }, 'Unmute');
      this.tile = h('figure', { class: 'tile', testid: 'remote-tile', dataset: { peerId } },
        this.video, h('figcaption', {}, memberName(peerId), ' · ', this.stateEl, ' ', this.unmute));
      tiles.append(this.tile);
      this.pc.onicecandidate = (e) => send({ type: 'candidate', roomId, to: peerId, payload: e.candidate ? e.candidate.toJSON() : null });
      this.pc.ontrack = (e) => {
        this.remote.addTrack(e.track);
        if (this.video.srcObject !== this.remote) {
          this.video.srcObject = this.remote;
          // Autoplay with sound may be refused before any click on the page: play muted then.
          this.video.play().catch(() => {
            this.video.muted = true;
            this.unmute.hidden = false;
            this.video.play().catch(() => {});
          });
        }
      };
      // A data channel only to learn at once that the other side hung up: its pc.close()
      // closes the channel here, long before ICE would notice the silence.
      this.pc.ondatachannel = (e) => this.watch(e.channel);
      this.pc.onconnectionstatechange = () => {
        const s = this.pc.connectionState;
        if (s === 'connected') this.setState('connected', 'connected');
        else if (s === 'connecting') this.setState('connecting', 'connecting…');
        else if (s === 'disconnected') this.setState('connecting', 'connection interrupted…');
        else if (s === 'failed') this.end('the connection failed');
        else if (s === 'closed') this.end('call ended');
      };
    }
    watch(channel) {
      this.channel = channel;
      channel.onclose = () => this.end('the other side hung up');
    }
    setState(state, text) {
      this.stateEl.textContent = text;
      this.stateEl.dataset.state = state;
      this.tile.dataset.state = state;
    }
    run(step) {
      this.chain = this.chain.then(step).catch((err) => {
        if (calls.get(this.peerId) !== this) return;
        errors.show(`Call with ${memberName(this.peerId)} failed: ${err.message}`, `call:${this.peerId}`);
        this.end('failed');
      });
    }
    async addLocalMedia() {
      const camera = await getCamera();
      const kinds = new Set();
      for (const track of camera?.getTracks() ?? []) {
        this.pc.addTrack(track, camera);
        kinds.add(track.kind);
      }
      // Without a camera we still want to receive: ask for the missing kinds receive-only.
      const existing = new Set(this.pc.getTransceivers().map((t) => t.receiver.track.kind));
      for (const kind of ['video', 'audio']) {
        if (!kinds.has(kind) && !existing.has(kind)) this.pc.addTransceiver(kind, { direction: 'recvonly' });
      }
    }
    async addCandidate(payload) {
      if (!this.pc.remoteDescription) { this.pending.push(payload); return; }
      try {
        // null or an empty candidate is the end-of-candidates marker.
        if (payload === null || payload === undefined || payload.candidate === '') await this.pc.addIceCandidate();
        else await this.pc.addIceCandidate(payload);
      } catch (err) {
        console.warn('addIceCandidate', err);
      }
    }
    async flushCandidates() {
      const queued = this.pending.splice(0);
      for (const c of queued) await this.addCandidate(c);
    }
    end(reason, { quiet = false } = {}) {
      if (this.ended) return;
      this.ended = true;
      if (calls.get(this.peerId) === this) calls.delete(this.peerId);
      this.pc.onconnectionstatechange = null;
      if (this.channel) this.channel.onclose = null;
      this.pc.close();
      this.video.srcObject = null;
      this.tile.remove();
      if (!quiet) chatSystem(`Call with ${memberName(this.peerId)}: ${reason}.`);
      renderMembers();
    }
  }

  function startCall(peerId) {
    calls.get(peerId)?.end('replaced', { quiet: true });
    errors.clear(`call:${peerId}`);
    const call = new Call(peerId);
    calls.set(peerId, call);
    call.setState('calling', 'calling…');
    renderMembers();
    call.watch(call.pc.createDataChannel('call'));
    call.run(async () => {
      await call.addLocalMedia();
      await call.pc.setLocalDescription(await call.pc.createOffer());
      send({ type: 'offer', roomId, to: peerId, payload: call.pc.localDescription.toJSON() });
    });
  }

  function onSignal(msg) {
    const from = msg.from;
    if (!from || from === myPeerId || (msg.to && msg.to !== myPeerId)) return;
    let call = calls.get(from);
    if (msg.type === 'offer') {
      if (call && call.pc.signalingState === 'have-local-offer' && myPeerId > from) {
        return; // both called at once: the peer with the larger id keeps its own offer
      }
      call?.end('replaced', { quiet: true });
      call = new Call(from);
      calls.set(from, call);
      call.setState('answering', 'answering…');
      renderMembers();
      chatSystem(`${memberName(from)} is calling you; answering automatically.`);
      call.run(async () => {
        await call.pc.setRemoteDescription(msg.payload);
        await call.flushCandidates();
        await call.addLocalMedia();
        await call.pc.setLocalDescription(await call.pc.createAnswer());
        send({ type: 'answer', roomId, to: from, payload: call.pc.localDescription.toJSON() });
      });
    } else if (msg.type === 'answer' && call) {
      call.run(async () => {
        if (call.pc.signalingState !== 'have-local-offer') return;
        await call.pc.setRemoteDescription(msg.payload);
        await call.flushCandidates();
      });
    } else if (msg.type === 'candidate' && call) {
      call.run(() => call.addCandidate(msg.payload));
    }
  }

  // --- members and chat

  function memberName(peerId) {
    return members.get(peerId)?.name || peerId;
  }

  function renderMembers() {
    const sorted = [...members.values()].sort((a, b) => (a.peerId === myPeerId ? -1 : b.peerId === myPeerId ? 1 : 0));
    memberList.replaceChildren(...sorted.map((m) => {
      const self = m.peerId === myPeerId;
      const inCall = calls.has(m.peerId);
      const button = self ? null : inCall
        ? h('button', { type: 'button', class: 'small danger', testid: 'hangup-button', dataset: { peerId: m.peerId }, onclick: () => calls.get(m.peerId)?.end('you hung up') }, 'Hang up')
        : h('button', { type: 'button', class: 'small', testid: 'call-button', dataset: { peerId: m.peerId }, onclick: () => startCall(m.peerId) }, 'Call');
      return h('li', { testid: 'member-item', dataset: { peerId: m.peerId, role: m.role ?? '' }, class: self ? 'self' : '' },
        h('span', { class: 'member-name', testid: 'member-name' }, m.name || m.peerId),
        m.role === 'host' ? h('span', { class: 'tag' }, 'host') : null,
        self ? h('span', { class: 'muted' }, ' (you)') : null,
        button);
    }));
  }

  function chatLine(entry, ...parts) {
    const nearBottom = chatLog.scrollHeight - chatLog.scrollTop - chatLog.clientHeight < 40;
    chatLog.append(h('div', entry, ...parts));
    if (nearBottom) chatLog.scrollTop = chatLog.scrollHeight;
  }
  function chatSystem(text) {
    chatLine({ class: 'chat-line system', testid: 'chat-system' }, h('span', { class: 'time' }, time(Date.now())), ' ', text);
  }
  function chatMessage(msg) {
    const mine = msg.from && msg.from === myPeerId;
    chatLine({ class: `chat-line${mine ? ' mine' : ''}`, testid: 'chat-message', dataset: { from: msg.from ?? '' } },
      h('span', { class: 'time' }, time(msg.ts ?? Date.now())), ' ',
      h('b', { class: 'chat-name' }, msg.name || msg.from || '?'), ' ',
      h('span', { class: 'chat-text' }, msg.text));
  }

  function sendChat(event) {
    event.preventDefault();
    const text = chatInput.value.trim();
    if (!text) return;
    if (send({ type: 'chat', roomId, text })) chatInput.value = '';
  }

  // --- WebSocket

  function send(msg) {
    if (ws?.readyState !== WebSocket.OPEN) {
      errors.show('Not connected to livehub: the message was not sent.', 'ws-send');
      return false;
    }
    ws.send(JSON.stringify(msg));
    return true;
  }

  function setConnected(state, text) {
    wsState.textContent = text;
    wsState.dataset.state = state;
    const joined = state === 'joined';
    chatInput.disabled = !joined;
    chatSend.disabled = !joined;
  }

  function connect() {
    setConnected('connecting', 'connecting…');
    const socket = new WebSocket(wsUrl());
    ws = socket;
    socket.onopen = () => {
      const join = { type: 'join', roomId, name: myName() };
      if (token) Object.assign(join, { role: 'host', token });
      socket.send(JSON.stringify(join));
    };
    socket.onmessage = (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      if (ws === socket) handle(msg);
    };
    socket.onclose = (e) => {
      if (ws !== socket) return;
      ws = null;
      members.clear();
      for (const call of [...calls.values()]) call.end('disconnected from livehub', { quiet: true });
      renderMembers();
      if (closing) {
        if (wsState.dataset.state !== 'closed') setConnected('closed', 'disconnected');
        return;
      }
      setConnected('reconnecting', `disconnected${e.code === 1006 ? '' : ` (${e.code})`}, retrying…`);
      retryTimer = setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 10000);
    };
  }

  function handle(msg) {
    switch (msg.type) {
      case 'joined':
        myPeerId = msg.peerId;
        retryDelay = 1000;
        errors.clear('ws-send');
        members.clear();
        for (const m of msg.members ?? []) members.set(m.peerId, m);
        if (!members.has(myPeerId)) members.set(myPeerId, { peerId: myPeerId, name: myName(), role: msg.role });
        setConnected('joined', `joined as ${msg.role ?? 'viewer'}`);
        setRoom(msg.room);
        renderMembers();
        break;
      case 'peer-joined':
        members.set(msg.peer.peerId, msg.peer);
        renderMembers();
        chatSystem(`${msg.peer.name || msg.peer.peerId} joined.`);
        break;
      case 'peer-left': {
        const name = memberName(msg.peerId);
        calls.get(msg.peerId)?.end('the other side left', { quiet: true });
        members.delete(msg.peerId);
        renderMembers();
        chatSystem(`${name} left.`);
        break;
      }
      case 'viewer-count':
        setRoom({ viewerCount: msg.viewerCount });
        break;
      case 'room-status': {
        const before = room?.status;
        setRoom({ ...msg.room, status: msg.status });
        if (msg.status !== before) chatSystem(`The room is now ${msg.status}.`);
        break;
      }
      case 'chat':
        chatMessage(msg);
        break;
      case 'offer':
      case 'answer':
      case 'candidate':
        onSignal(msg);
        break;
      case 'kicked':
        closing = true;
        errors.show('The host removed you from this room.', 'kicked');
        ws?.close();
        break;
      case 'left':
        break;
      case 'error':
        if (msg.code === 'room_ended') {
          // e.g. rejoining after a disconnect, when the room ended meanwhile
          setRoom({ status: 'ended' });
          closing = true;
          ws?.close();
          setConnected('closed', 'room ended: chat is closed');
          break;
        }
        errors.show(`livehub refused ${msg.inReplyTo ? `the ${msg.inReplyTo} message` : 'a message'}: ${msg.message ?? 'error'} [${msg.code ?? 'error'}]`, `ws:${msg.code}`);
        break;
      default:
        console.debug('unhandled message', msg);
    }
  }

  // --- start and stop

  setConnected('connecting', 'loading…');
  let stopped = false;
  load().then((ok) => {
    if (!ok || stopped) return;
    if (room.status === 'ended') setConnected('closed', 'room ended: chat is closed');
    else connect();
  });

  return () => {
    stopped = true;
    closing = true;
    clearTimeout(retryTimer);
    if (ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'leave', roomId }));
    ws?.close(1000);
    for (const call of [...calls.values()]) call.end('left the room', { quiet: true });
    player.stop();
    publisher.stop();
    cameraPromise?.then((s) => s?.getTracks().forEach((t) => t.stop()));
  };
}

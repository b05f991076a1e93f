// The lobby (#/): the create-room form and the room list.
//
// The list is paged (GET /api/rooms answers at most one page, its total in X-Total-Count and
// the next page in Link rel="next"); "Show more" follows that link. The list is not fetched
// again as a whole: every few seconds only the active rooms are polled (status=live for badges
// and counts, status=preparing for new rooms), and a shown room that left both sets is asked
// for once, by id, to learn how it ended.

import { describe, fieldReasons, livehub } from './api.js';
import { apiKey, forgetOwnerToken, ownerToken, saveApiKey, saveOwnerToken } from './identity.js';
import { copyField, errors, h, plural, statusBadge, time, updateBadge } from './ui.js';

const POLL_MS = 2000;
const PAGE = 100; // the server's default page size
const TITLE_MAX = 100; // the API's limit (RoomCreateSchema)
const ACTIVE = ['live', 'preparing'];

export function lobbyView(root) {
  document.title = 'livehub · rooms';
  let stopped = false;
  let timer = null;
  const rows = new Map(); // room id -> {room, tr, badge, viewers, players, link}
  let total = null; // X-Total-Count of the last page read, plus rooms found by polling since
  let next = null; // URL of the next page
  let offset = 0; // paging by offset, for a server that sends no Link header

  // --- create form
  // No maxlength: it counts UTF-16 units, so an emoji counts twice and the field would stop at
  // 50 of them. The API counts characters (code points): so does limitTitle.
  const titleInput = h('input', {
    name: 'title', required: true, placeholder: `Room title (at most ${TITLE_MAX} characters)`,
    testid: 'create-title', 'aria-describedby': 'create-title-error', dataset: { maxChars: TITLE_MAX },
    oninput: (event) => { if (!event.isComposing) limitTitle(); },
    oncompositionend: () => limitTitle(),
  });
  /** Keep at most TITLE_MAX characters, as the API counts them; the rest is cut off. */
  function limitTitle() {
    const chars = [...titleInput.value];
    if (chars.length > TITLE_MAX) titleInput.value = chars.slice(0, TITLE_MAX).join('');
  }
  const titleError = h('p', { class: 'field-error', id: 'create-title-error', testid: 'create-title-error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', testid: 'create-submit' }, 'Create room');
  const createError = h('p', { class: 'form-error', testid: 'create-error', role: 'alert', hidden: true });
  const privateInput = h('input', { type: 'checkbox', testid: 'create-private' });
  const privateBox = h('label', { class: 'private-box' }, privateInput,
    ' Private: not listed; only people with a viewer link can see, join and play it');
  const keyInput = h('input', {
    type: 'password', value: apiKey(), placeholder: 'API key (leave empty if the server needs none)',
    testid: 'api-key-input', autocomplete: 'off', spellcheck: false,
    onchange: () => { saveApiKey(keyInput.value.trim()); keyInput.value = apiKey(); keyState(); },
  });
  const keyNote = h('span', { class: 'muted', testid: 'api-key-state' });
  const keyBox = h('details', { class: 'api-key', testid: 'api-key', open: Boolean(apiKey()) },
    h('summary', {}, 'API key ', keyNote),
    h('p', { class: 'muted' }, 'A server started with LIVEHUB_API_KEYS creates rooms only for a key holder. ',
      'The key is kept in this browser and sent only when you create a room.'),
    h('div', { class: 'field-row' }, keyInput));
  const keyState = () => { keyNote.textContent = apiKey() ? '(saved in this browser)' : '(none)'; };
  keyState();

  const result = h('section', { class: 'card create-result', testid: 'create-result', hidden: true });
  const form = h('form', { class: 'card create-form', testid: 'create-form', onsubmit: create, novalidate: true },
    h('h2', {}, 'Create a room'),
    h('div', { class: 'field-row' }, titleInput, submit),
    privateBox, titleError, createError, keyBox);

  // --- room list
  const tbody = h('tbody', { testid: 'room-list' });
  const empty = h('p', { class: 'muted', testid: 'room-list-empty' }, 'No rooms yet. Create one above.');
  const totalEl = h('span', { class: 'muted', testid: 'room-list-total' });
  const more = h('button', { type: 'button', class: 'small copy', testid: 'room-list-more', hidden: true, onclick: loadMore }, 'Show more');
  root.append(form, result,
    h('section', { class: 'card rooms-card' },
      h('div', { class: 'card-head' }, h('h2', {}, 'Rooms'), totalEl),
      h('table', { class: 'rooms' },
        h('colgroup', {}, h('col', { class: 'col-title' }), h('col', { class: 'col-status' }), h('col', { class: 'col-num' }),
          h('col', { class: 'col-num' }), h('col', { class: 'col-created' })),
        h('thead', {}, h('tr', {}, h('th', {}, 'Room'), h('th', {}, 'Status'), h('th', { class: 'num', title: 'Members of the room (its WebSocket connections, hosts too)' }, 'Members'),
          h('th', { class: 'num' }, 'Players'), h('th', {}, 'Created'))),
        tbody),
      empty,
      h('p', { class: 'more' }, more)));

  function fieldError(text) {
    titleError.textContent = text ?? '';
    titleError.hidden = !text;
    titleInput.toggleAttribute('aria-invalid', Boolean(text));
  }
  function formError(text) {
    createError.textContent = text ?? '';
    createError.hidden = !text;
  }

  async function create(event) {
    event.preventDefault();
    const title = titleInput.value.trim();
    fieldError(null);
    formError(null);
    errors.clear('create');
    if (!title) {
      fieldError('Enter a title: it needs at least one visible character.');
      titleInput.focus();
      return;
    }
    submit.disabled = true;
    saveApiKey(keyInput.value.trim()); // Enter in the key field submits without a change event
    keyState();
    try {
      const body = privateInput.checked ? { title, visibility: 'private' } : { title };
      const room = await livehub.createRoom(body, { token: apiKey() || undefined });
      saveOwnerToken(room.id, room.ownerToken);
      showCreated(room);
      titleInput.value = '';
      upsert(room, { found: true });
      renderFooter();
    } catch (err) {
      showCreateError(err);
    } finally {
      submit.disabled = false;
    }
  }

  function showCreateError(err) {
    const reasons = fieldReasons(err, 'title');
    if (err.status === 400 && reasons.length) {
      fieldError(`Title: ${reasons.join(' ')}`);
      titleInput.focus();
    } else if (err.status === 401 || err.status === 403) {
      formError(apiKey()
        ? `This server refused the API key (${err.message}): check the key below.`
        : 'This server needs an API key to create rooms: enter one below.');
      keyBox.open = true;
      keyInput.focus();
    } else if (err.status === 429) {
      formError(`Too many rooms created from here: try again in ${err.retryAfter ?? 'a few'} s.`);
    } else if (err.code === 'too_many_rooms') {
      formError(`This server holds as many open rooms as it may: try again in ${err.retryAfter ?? 'a few'} s.`);
    } else {
      errors.show(describe('Could not create the room', err), 'create');
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
      h('h2', { class: 'created-heading' }, 'Room created: ', h('span', { testid: 'created-title' }, room.title)),
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

  // --- rows

  /** Show a room (new or changed). `found`: a room the paged list did not count yet. */
  function upsert(room, { found = false } = {}) {
    let row = rows.get(room.id);
    if (!row) {
      const badge = statusBadge(room.status, room.reconnecting);
      const viewers = h('span', { testid: 'viewer-count' });
      const players = h('span', { testid: 'player-count' });
      const link = h('a', { href: `#/room/${encodeURIComponent(room.id)}`, testid: 'room-link', class: 'room-title' });
      const owned = ownerToken(room.id)
        ? h('span', { class: 'tag', title: 'You own this room (token saved in this browser)' }, 'owner') : null;
      const viewersUnit = h('span', { class: 'unit' });
      const playersUnit = h('span', { class: 'unit' });
      // the whole row opens the room (a phone's tap rarely hits the title link itself)
      const open = (event) => { if (!event.target.closest('a')) location.hash = `#/room/${encodeURIComponent(room.id)}`; };
      const tr = h('tr', { testid: 'room-row', dataset: { roomId: room.id }, onclick: open },
        h('td', { class: 'title-cell' }, h('div', { class: 'title-wrap' }, link, owned)), h('td', {}, badge),
        h('td', { class: 'num' }, viewers, viewersUnit), h('td', { class: 'num' }, players, playersUnit),
        h('td', { class: 'muted created' }, time(room.createdAt)));
      row = { room, tr, badge, viewers, players, link, viewersUnit, playersUnit };
      rows.set(room.id, row);
      if (found && total !== null) total += 1;
      place(row);
    }
    row.room = { ...row.room, ...room };
    const title = room.title || room.id;
    row.link.textContent = title;
    row.link.title = title;
    updateBadge(row.badge, row.room);
    row.viewers.textContent = String(row.room.viewerCount ?? 0);
    row.players.textContent = String(row.room.playerCount ?? 0);
    row.viewersUnit.textContent = ` ${plural(row.room.viewerCount ?? 0, 'member')}`;
    row.playersUnit.textContent = ` ${plural(row.room.playerCount ?? 0, 'player')}`;
    row.tr.dataset.status = row.room.status;
    // a public room that ended needs its owner token no more (identity.js)
    if (row.room.status === 'ended' && row.room.visibility === 'public') forgetOwnerToken(room.id);
  }

  /** Insert a new row where the server's order puts it: newest first. */
  function place(row) {
    const created = row.room.createdAt ?? 0;
    const after = [...tbody.children].find((tr) => (rows.get(tr.dataset.roomId)?.room.createdAt ?? 0) < created);
    tbody.insertBefore(row.tr, after ?? null);
  }

  function drop(id) {
    rows.get(id)?.tr.remove();
    if (rows.delete(id) && total !== null) total -= 1;
  }

  function renderFooter() {
    empty.hidden = rows.size > 0;
    more.hidden = !next;
    totalEl.textContent = total !== null && total > rows.size
      ? `${rows.size} of ${total} rooms shown`
      : `${rows.size} ${plural(rows.size, 'room')}`;
  }

  // --- paging

  /** One page of the list: `{status}` or `{next}` (a URL); the SDK reads X-Total-Count and
   * Link rel="next". */
  async function readPage(query) {
    const page = await livehub.listRoomsPage({ limit: PAGE, ...query });
    const rooms = Array.isArray(page.rooms) ? page.rooms : [];
    return { rooms, total: page.total, next: page.next, full: rooms.length >= PAGE };
  }

  function takePage(page, { first }) {
    offset += page.rooms.length;
    for (const room of page.rooms) upsert(room);
    if (page.total !== null) total = Math.max(page.total, rows.size);
    else if (first) total = null;
    // A server without Link headers pages by offset; one with them says when it is done.
    next = page.next ?? (page.total === null && page.full ? `/api/rooms?limit=${PAGE}&offset=${offset}` : null);
    renderFooter();
  }

  async function loadFirst() {
    try {
      takePage(await readPage({}), { first: true });
      errors.clear('poll');
      return true;
    } catch (err) {
      if (!stopped) errors.show(describe('Could not load the rooms', err), 'poll');
      return false;
    }
  }

  async function loadMore() {
    if (!next) return;
    more.disabled = true;
    try {
      const page = await readPage({ next });
      if (!stopped) takePage(page, { first: false });
    } catch (err) {
      if (!stopped) errors.show(describe('Could not load more rooms', err), 'more');
    } finally {
      more.disabled = false;
    }
  }

  // --- polling what is active

  async function pollActive() {
    const seen = new Set();
    const complete = new Set(); // statuses whose whole set came back in one page
    for (const status of ACTIVE) {
      const page = await readPage({ status });
      if (stopped) return;
      for (const room of page.rooms) {
        seen.add(room.id);
        upsert(room, { found: !rows.has(room.id) });
      }
      if (!page.next && (page.total === null ? !page.full : page.total <= page.rooms.length)) complete.add(status);
    }
    // Shown as active but in neither set any more: ask for that room alone.
    const gone = [...rows.values()].filter((r) => complete.has(r.room.status) && !seen.has(r.room.id));
    for (const row of gone) {
      try {
        upsert(await livehub.getRoom(row.room.id));
      } catch (err) {
        if (err.status === 404) drop(row.room.id);
        else throw err;
      }
      if (stopped) return;
    }
    renderFooter();
  }

  let loaded = false;
  async function poll() {
    try {
      if (loaded) {
        await pollActive();
        errors.clear('poll');
      } else {
        loaded = await loadFirst(); // the first page failed: read it again, not just the active rooms
      }
    } catch (err) {
      if (!stopped) errors.show(describe('Could not refresh the rooms', err), 'poll');
    }
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  }

  loadFirst().then((ok) => {
    loaded = ok;
    if (!stopped) timer = setTimeout(poll, POLL_MS);
  });
  titleInput.focus();

  return () => { stopped = true; clearTimeout(timer); };
}

// The room page (#/room/<id>, a private room's viewers: #/room/<id>?token=<viewer token>):
// wires the stage grid (the main player and the guests' streams), the owner panel and
// publisher, the member panel (host: invite to stage, mute) and the chat (host: delete, slow
// mode) to the room's state and its WebSocket.
//
// Everything it says to livehub goes through the JavaScript SDK (api.js: `livehub`): REST
// calls, and a signaling client (`livehub.connect()`) whose room handle (`signal`) chats,
// runs the stage and moderates; the SDK reconnects with backoff and joins the room again. This
// page builds no protocol message: it reads the events the client hands it.
//
// Room state has two sources: pushes on the WebSocket (`joined`, `room-status`,
// `viewer-count`) and REST replies (the first load, the close reply). A reply was built when
// the server answered, and pushes sent after that can arrive before it, so a reply is applied
// only if no push arrived while it was in flight and it is not older by `version`; otherwise
// only what can never be stale is taken from it: that the room ended (ended is final).

import { describe, livehub } from './api.js';
import { createCamera } from './camera.js';
import { createChat } from './chat.js';
import { forgetOwnerToken, myName, ownerToken } from './identity.js';
import { createMembers } from './members.js';
import { createOwnerPanel } from './owner.js';
import { createPlayer } from './player.js';
import { createPublisher } from './publisher.js';
import { createRecordings } from './recordings.js';
import { createStage } from './stage.js';
import { copyField, countStat, errors, h, statusBadge, updateBadge } from './ui.js';

const MUTE_SECONDS = 300;

/** The viewer token in the page's hash (`#/room/<id>?token=...`), if any. */
function hashToken() {
  const query = location.hash.split('?')[1] ?? '';
  return new URLSearchParams(query).get('token');
}

/** `url` carrying `token` as `token=` (a private room's play URLs), unless it does already. */
function withToken(url, token) {
  if (!url || !token || /[?&]token=/.test(url)) return url;
  return `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
}

/** The viewer token a room view's play URLs carry (an owner's view carries one minted for it). */
function tokenOf(room) {
  const url = room?.playUrls?.flv;
  if (!url) return null;
  try { return new URL(url).searchParams.get('token'); } catch { return null; }
}

/** True when `next` is known to describe an older state of the room than `current`. */
function isOlder(next, current) {
  if (!current) return false;
  if (typeof next.version === 'number' && typeof current.version === 'number') return next.version < current.version;
  if (typeof next.updatedAt === 'number' && typeof current.updatedAt === 'number') return next.updatedAt < current.updatedAt;
  return false;
}

export function roomView(root, roomId) {
  document.title = 'livehub · room';
  let token = ownerToken(roomId, { use: true });
  let playToken = hashToken(); // a private room's viewer token (this page's players carry it)
  const viewerToken = playToken;
  let role = null; // as `joined` said
  let room = null;
  let publish = null; // owner only: {whipUrl, obsServer, ...}; never shown to viewers
  let myPeerId = null;
  let joined = false;
  let pushes = 0; // room states pushed on the WebSocket so far (see the top of this file)
  let stopped = false;
  let client = null; // the SDK's signaling client
  let signal = null; // the SDK's handle of this room, once joined
  let closing = false; // the client was closed on purpose: no reconnect follows

  const idleText = () => (token
    ? 'Not live yet: go live from the camera below, or publish with OBS or ffmpeg.'
    : 'Waiting for the host to go live.');

  // --- parts
  const isHost = () => role === 'host';
  /** Settle an SDK request: a refusal comes as the server's `error` event too (handled in
   * `handle`), so only what livehub never answered is said here. */
  const act = (promise) => promise?.catch((err) => {
    if (err.code === 'disconnected') errors.show('Not connected to livehub: the message may not have arrived.', 'ws-send');
    else if (err.code === 'timeout') errors.show('livehub did not answer: try again.', 'ws-send');
  });
  /** The room handle, or null (and the page says so) while not joined. */
  const joinedSignal = () => {
    if (signal && joined && client?.connected) return signal;
    errors.show('Not connected to livehub: the message was not sent.', 'ws-send');
    return null;
  };
  const camera = createCamera();
  const player = createPlayer({ getRoom: () => room, idleText });
  const recordings = createRecordings({ roomId, token: () => playToken });
  const chat = createChat({
    myPeerId: () => myPeerId,
    canModerate: isHost,
    onSend(text) {
      const room = joinedSignal();
      if (room) act(room.chat(text));
      return Boolean(room);
    },
    onDelete: (id) => act(joinedSignal()?.deleteChat(id)),
    onSlowMode: (seconds) => act(joinedSignal()?.setSlowMode(seconds)),
  });
  const stage = createStage({
    camera, signal: joinedSignal, act, myPeerId: () => myPeerId, isHost,
    memberName: (peerId) => members.name(peerId), say: (text) => chat.say(text),
    playUrl: (url) => withToken(url, playToken), onChange: () => members.render(),
  });
  stage.setMain(player.el);
  const muted = new Set(); // members this (host) page muted
  const moderation = {
    muted: (peerId) => muted.has(peerId),
    mute(peerId) {
      const room = joinedSignal();
      if (!room) return;
      muted.add(peerId);
      act(room.mute(peerId, MUTE_SECONDS));
      chat.say(`You muted ${members.name(peerId)} for ${MUTE_SECONDS / 60} minutes.`);
      members.render();
    },
    unmute(peerId) {
      const room = joinedSignal();
      if (!room) return;
      muted.delete(peerId);
      act(room.unmute(peerId));
      chat.say(`You unmuted ${members.name(peerId)}.`);
      members.render();
    },
  };
  const members = createMembers({ myPeerId: () => myPeerId, isHost, stage, moderation });
  const publisher = createPublisher({ getWhipUrl: () => publish?.whipUrl ?? null, camera, onChange: renderOwner });
  const owner = createOwnerPanel({ onGoLive: () => publisher.start(), onStopLive: () => publisher.stop(), onClose: closeRoom });

  // --- signaling (the SDK's client: it reconnects and joins again by itself; a stage guest's
  // rejoin carries its stage token, so it takes its place again: its stream to SRS never
  // stopped, media does not go through livehub)

  function connect() {
    closing = false;
    setConnection('connecting', 'connecting…');
    client = livehub.connect({ minDelay: 1000, maxDelay: 10000 });
    client.on('message', (msg) => { if (msg.roomId === undefined || msg.roomId === roomId) handle(msg); });
    client.on('close', ({ code }) => {
      joined = false;
      members.clear();
      stage.dropped();
      if (closing) {
        if (wsState.dataset.state !== 'closed') setConnection('closed', 'disconnected');
      } else {
        setConnection('reconnecting', `disconnected${code === 1006 ? '' : ` (${code})`}, retrying…`);
      }
      renderChat();
    });
    join();
  }

  function join() {
    const options = { name: myName(), ...(token ? { role: 'host', token } : { token: viewerToken }) };
    client.join(roomId, options).then((handle) => {
      signal = handle;
      // the server refused a rejoin after a reconnect (the room ended, a ban): its `error`
      // event says why (handled below). A rejoin cut off by another drop is not lost: the
      // SDK sends it again on the next connection.
      handle.on('lost', () => { if (signal === handle) signal = null; });
    }, (err) => {
      // refused: its `error` event says why; no answer (the connection dropped): try again
      if (!closing && (err.code === 'timeout' || err.code === 'disconnected')) client.opened().then(join, () => {});
    });
  }

  /** Close the signaling client for good (saying `leave` first when asked). */
  function disconnect({ leave = false } = {}) {
    closing = true;
    if (leave && signal && client?.connected) signal.leave().catch(() => {});
    signal = null;
    client?.close();
  }

  // --- layout
  const titleEl = h('h1', { testid: 'room-title' }, 'Loading…');
  const badge = statusBadge('loading');
  // the API's viewerCount counts every signaling member, hosts too: "members" says so
  const viewers = countStat('member', 'viewer-count');
  const players = countStat('player', 'player-count');
  const wsState = h('span', { class: 'ws-state', testid: 'ws-state' }, 'connecting…');

  const privateTag = h('span', { class: 'tag private-tag', testid: 'private-tag', hidden: true }, 'private');
  const viewerLink = h('section', { class: 'card viewer-link', testid: 'viewer-link-panel', hidden: true },
    h('h2', {}, 'Viewer link'),
    h('p', { class: 'muted' }, 'This room is private: only people with a viewer link can see, join and play it.'),
    h('button', { type: 'button', testid: 'viewer-link-button', onclick: makeViewerLink }, 'Create a viewer link (valid 24 h)'));

  root.append(h('div', { class: 'room-page', testid: 'room-page', dataset: { roomId } },
    h('div', { class: 'room-head' },
      h('a', { href: '#/', class: 'back' }, '← Rooms'),
      titleEl, privateTag, badge, viewers.el, players.el, wsState),
    stage.promptEl,
    h('div', { class: 'room-grid' },
      h('div', { class: 'main-col' }, stage.el, recordings.el, owner.el, viewerLink),
      h('div', { class: 'side-col' }, members.el, chat.el))));

  // --- room state

  function setRoom(next) {
    if (!next) return;
    const before = room?.status;
    playToken ??= tokenOf(next);
    if (next.playUrls && playToken) {
      // broadcasts go to members holding different tokens: their URLs carry none
      next = { ...next, playUrls: Object.fromEntries(Object.entries(next.playUrls).map(([k, u]) => [k, withToken(u, playToken)])) };
    }
    if (Array.isArray(next.stage)) stage.set(next.stage);
    const merged = { ...room, ...next };
    if (before === 'ended') merged.status = 'ended'; // ended is final
    room = merged;
    // a public room that ended needs its owner token no more; a private one's opens its page
    // and its recordings (bounded like every kept token: identity.js)
    if (room.status === 'ended' && room.visibility === 'public') forgetOwnerToken(roomId);
    titleEl.textContent = room.title || room.id;
    titleEl.title = room.title || '';
    document.title = `livehub · ${room.title || room.id}`;
    updateBadge(badge, room);
    viewers.set(room.viewerCount);
    players.set(room.playerCount);
    members.setViewerCount(room.viewerCount ?? 0);
    if (room.status !== before) {
      if (room.status === 'live') player.start({ manual: true });
      else player.stop(room.status === 'ended' ? 'The room has ended.' : idleText());
      if (room.status === 'ended') publisher.stop();
      if (room.status === 'ended') recordings.load();
      if (before) chat.say(`The room is now ${room.status}.`);
    }
    privateTag.hidden = room.visibility !== 'private';
    viewerLink.hidden = !(token && room.visibility === 'private' && room.status !== 'ended');
    renderOwner();
    renderChat();
  }

  async function makeViewerLink() {
    errors.clear('viewer-link');
    try {
      const made = await livehub.createViewerToken(roomId, { token, ttl: 24 * 3600 }).catch(refusedOwner);
      const link = `${location.origin}${location.pathname}#/room/${encodeURIComponent(roomId)}?token=${encodeURIComponent(made.token)}`;
      viewerLink.querySelector('.field')?.remove();
      viewerLink.append(copyField('Viewer link', link, 'viewer-link'));
    } catch (err) {
      errors.show(describe('Could not create a viewer link', err), 'viewer-link');
    }
  }

  /** A state pushed on the WebSocket: newer than any reply still in flight. */
  function applyPush(next) {
    if (!next) return;
    pushes += 1;
    if (isOlder(next, room)) return;
    setRoom(next);
  }

  /** A REST reply to a request started when `pushes` was `seen`. */
  function applyReply(reply, seen) {
    if (!reply) return;
    if (pushes === seen && !isOlder(reply, room)) setRoom(reply);
    else if (reply.status === 'ended' && room?.status !== 'ended') setRoom({ status: 'ended', endTime: reply.endTime ?? null });
  }

  function renderOwner() {
    stage.setOwnerLive(Boolean(token) && publisher.active);
    owner.render({
      visible: Boolean(token && room),
      ended: room?.status === 'ended',
      publish,
      publishing: publisher.active,
      publishText: publisher.state,
    });
  }

  function renderChat() {
    chat.setState(room?.status === 'ended' ? 'ended' : joined ? 'open' : 'disconnected');
  }

  function setConnection(state, text) {
    wsState.textContent = text;
    wsState.dataset.state = state;
    renderChat();
  }

  async function load() {
    const seen = pushes;
    let reply;
    try {
      // the owner's token, else a private room's viewer token
      reply = await livehub.getRoom(roomId, { token: token ?? viewerToken });
    } catch (err) {
      if (token && (err.status === 401 || err.status === 403)) {
        errors.show(describe('The saved owner token was refused: you are a viewer here', err), 'owner');
        forgetOwnerToken(roomId);
        token = null;
        return load();
      }
      if (err.status === 404) {
        forgetOwnerToken(roomId); // no such room (any more)
        root.replaceChildren(h('section', { class: 'card', testid: 'room-not-found' },
          h('h1', {}, 'Room not found'),
          h('p', {}, `There is no room "${roomId}", or it is private and ${viewerToken ? 'this viewer link has expired' : 'needs a viewer link from its host'}. `,
            h('a', { href: '#/' }, 'Back to the rooms'))));
      }
      errors.show(describe('Could not load the room', err), 'load');
      return false;
    }
    publish = token ? reply?.publish ?? null : null;
    if (reply) delete reply.publish; // keep the secret in one place only
    if (token && !publish) {
      // livehub answers a wrong token with the public room, without `publish`.
      errors.show('The saved owner token is not valid for this room: you are a viewer here.', 'owner');
      forgetOwnerToken(roomId);
      token = null;
    }
    applyReply(reply, seen);
    return true;
  }

  /** An owner route's refusal: a token refused (401, 403) or a room gone (404) is forgotten. */
  function refusedOwner(err) {
    if (err?.status === 401 || err?.status === 403 || err?.status === 404) forgetOwnerToken(roomId);
    throw err;
  }

  async function closeRoom() {
    errors.clear('close');
    const seen = pushes;
    try {
      const res = await livehub.closeRoom(roomId, { token }).catch(refusedOwner);
      if (stopped) return;
      applyReply(res?.room ?? { status: 'ended' }, seen);
    } catch (err) {
      errors.show(describe('Could not close the room', err), 'close');
    }
    renderOwner();
  }

  // --- WebSocket messages

  function handle(msg) {
    switch (msg.type) {
      case 'joined':
        myPeerId = msg.peerId;
        role = msg.role ?? 'viewer';
        joined = true;
        errors.clear('ws-send');
        members.reset({
          list: msg.members ?? [],
          mode: msg.presence,
          count: msg.viewerCount ?? msg.room?.viewerCount ?? 0,
          self: { peerId: myPeerId, name: myName(), role: msg.role },
        });
        setConnection('joined', `joined as ${msg.role ?? 'viewer'}`);
        chat.setSlowMode(msg.slowMode ?? 0);
        chat.renderControls();
        applyPush(msg.room);
        break;
      case 'presence-mode':
        members.setPresence(msg.presence, msg.members);
        if (typeof msg.viewerCount === 'number') applyPush({ viewerCount: msg.viewerCount });
        break;
      case 'peer-joined':
        if (members.add(msg.peer)) chat.say(`${msg.peer.name || msg.peer.peerId} joined.`);
        break;
      case 'peer-left': {
        const name = members.name(msg.peerId);
        muted.delete(msg.peerId);
        if (members.remove(msg.peerId)) chat.say(`${name} left.`);
        break;
      }
      case 'viewer-count':
        applyPush({ viewerCount: msg.viewerCount });
        break;
      case 'room-status':
        applyPush({ ...msg.room, status: msg.status });
        break;
      case 'chat':
        chat.message(msg);
        break;
      case 'chat-deleted':
        chat.deleted(msg.id);
        break;
      case 'muted':
        chat.say(`A host muted you until ${new Date(msg.until).toLocaleTimeString()}.`);
        break;
      case 'unmuted':
        chat.say('A host unmuted you.');
        break;
      case 'room-settings':
        chat.setSlowMode(msg.slowMode);
        chat.say(msg.slowMode ? `Slow mode is on: one line every ${msg.slowMode} s.` : 'Slow mode is off.');
        break;
      case 'stage':
      case 'stage-invite':
      case 'stage-credentials':
      case 'stage-declined':
      case 'stage-removed':
        stage.handle(msg);
        break;
      case 'offer':
      case 'answer':
      case 'candidate':
        break; // relayed for clients that call peer to peer; this console does not
      case 'kicked':
        errors.show('The host removed you from this room.', 'kicked');
        disconnect();
        break;
      case 'left':
        break;
      case 'error':
        if (msg.code === 'room_ended') {
          // The room ended before this message reached it (a chat, a rejoin after a drop).
          applyPush({ status: 'ended' });
          disconnect();
          setConnection('closed', 'room ended: chat is closed');
          break;
        }
        if (msg.code === 'muted') {
          errors.show('A host muted you: your message was not sent.', 'ws:muted');
          break;
        }
        if (msg.code === 'slow_mode') {
          errors.show(`Slow mode: ${msg.message ?? 'wait a little before your next line'}`, 'ws:slow_mode');
          break;
        }
        if (typeof msg.inReplyTo === 'string' && msg.inReplyTo.startsWith('stage-')) {
          stage.refused(msg);
          break;
        }
        if (msg.code === 'rate_limited') {
          errors.show(`Slow down: livehub dropped ${msg.inReplyTo ? `a ${msg.inReplyTo} message` : 'a message'} (too many in a short time).`, 'ws:rate_limited');
          break;
        }
        errors.show(`livehub refused ${msg.inReplyTo ? `the ${msg.inReplyTo} message` : 'a message'}: ${msg.message ?? 'error'} [${msg.code ?? 'error'}]`, `ws:${msg.code}`);
        break;
      default:
        console.debug('unhandled message', msg);
    }
  }

  // --- start and stop

  setConnection('connecting', 'loading…');
  load().then((ok) => {
    if (!ok || stopped) return;
    if (room.status === 'ended') setConnection('closed', 'room ended: chat is closed');
    else connect();
  });

  return () => {
    stopped = true;
    disconnect({ leave: true });
    stage.stopAll();
    player.stop();
    publisher.stop();
    camera.stop();
  };
}

// The room page (#/room/<id>, a private room's viewers: #/room/<id>?token=<viewer token>):
// wires the stage grid (the main player and the guests' streams), the owner panel and
// publisher, the member panel (host: invite to stage, mute) and the chat (host: delete, slow
// mode) to the room's state and its WebSocket.
//
// Room state has two sources: pushes on the WebSocket (`joined`, `room-status`,
// `viewer-count`) and REST replies (the first load, the close reply). A reply was built when
// the server answered, and pushes sent after that can arrive before it, so a reply is applied
// only if no push arrived while it was in flight and it is not older by `version`; otherwise
// only what can never be stale is taken from it: that the room ended (ended is final).

import { api, describe, roomPath } from './api.js';
import { createCamera } from './camera.js';
import { createChat } from './chat.js';
import { myName, ownerToken } from './identity.js';
import { createMembers } from './members.js';
import { createOwnerPanel } from './owner.js';
import { createPlayer } from './player.js';
import { createPublisher } from './publisher.js';
import { createRecordings } from './recordings.js';
import { createSocket } from './socket.js';
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
  let token = ownerToken(roomId);
  let playToken = hashToken(); // a private room's viewer token (this page's players carry it)
  const viewerToken = playToken;
  let role = null; // as `joined` said
  let room = null;
  let publish = null; // owner only: {whipUrl, obsServer, ...}; never shown to viewers
  let myPeerId = null;
  let joined = false;
  let pushes = 0; // room states pushed on the WebSocket so far (see the top of this file)
  let stopped = false;

  const idleText = () => (token
    ? 'Not live yet: go live from the camera below, or publish with OBS or ffmpeg.'
    : 'Waiting for the host to go live.');

  // --- parts
  const send = (msg) => socket.send({ ...msg, roomId });
  const isHost = () => role === 'host';
  const camera = createCamera();
  const player = createPlayer({ getRoom: () => room, idleText });
  const recordings = createRecordings({ roomId, token: () => playToken });
  const chat = createChat({ send, myPeerId: () => myPeerId, canModerate: isHost });
  const stage = createStage({
    roomId, camera, send, myPeerId: () => myPeerId, isHost,
    memberName: (peerId) => members.name(peerId), say: (text) => chat.say(text),
    playUrl: (url) => withToken(url, playToken), onChange: () => members.render(),
  });
  stage.setMain(player.el);
  const muted = new Set(); // members this (host) page muted
  const moderation = {
    muted: (peerId) => muted.has(peerId),
    mute(peerId) { muted.add(peerId); send({ type: 'mute', peerId, seconds: MUTE_SECONDS }); chat.say(`You muted ${members.name(peerId)} for ${MUTE_SECONDS / 60} minutes.`); members.render(); },
    unmute(peerId) { muted.delete(peerId); send({ type: 'unmute', peerId }); chat.say(`You unmuted ${members.name(peerId)}.`); members.render(); },
  };
  const members = createMembers({ myPeerId: () => myPeerId, isHost, stage, moderation });
  const publisher = createPublisher({ getWhipUrl: () => publish?.whipUrl ?? null, camera, onChange: renderOwner });
  const owner = createOwnerPanel({ onGoLive: () => publisher.start(), onStopLive: () => publisher.stop(), onClose: closeRoom });
  const socket = createSocket({
    joinMessage: () => ({
      type: 'join', roomId, name: myName(),
      ...(token ? { role: 'host', token } : viewerToken ? { token: viewerToken } : {}),
      // a guest whose connection dropped takes its place on stage again (its stream to SRS
      // never stopped: media does not go through livehub)
      ...(stage.token() ? { stageToken: stage.token() } : {}),
    }),
    onMessage: handle,
    onState: setConnection,
    onDrop(onPurpose) {
      joined = false;
      members.clear();
      stage.dropped();
      if (onPurpose && wsState.dataset.state !== 'closed') setConnection('closed', 'disconnected');
      renderChat();
    },
  });

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
      const made = await api('POST', `${roomPath(roomId)}/viewer-tokens`, { token, body: { ttl: 24 * 3600 } });
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
    const path = !token && viewerToken ? `${roomPath(roomId)}?token=${encodeURIComponent(viewerToken)}` : roomPath(roomId);
    try {
      reply = await api('GET', path, { token });
    } catch (err) {
      if (token && (err.status === 401 || err.status === 403)) {
        errors.show(describe('The saved owner token was refused: you are a viewer here', err), 'owner');
        token = null;
        return load();
      }
      if (err.status === 404) {
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
      token = null;
    }
    applyReply(reply, seen);
    return true;
  }

  async function closeRoom() {
    errors.clear('close');
    const seen = pushes;
    try {
      const res = await api('POST', `${roomPath(roomId)}/close`, { token });
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
        socket.joined();
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
        socket.close();
        break;
      case 'left':
        break;
      case 'error':
        if (msg.code === 'room_ended') {
          // The room ended before this message reached it (a chat, a rejoin after a drop).
          applyPush({ status: 'ended' });
          socket.close();
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
    else socket.connect();
  });

  return () => {
    stopped = true;
    socket.close({ leave: { type: 'leave', roomId } });
    stage.stopAll();
    player.stop();
    publisher.stop();
    camera.stop();
  };
}

// The stage: co-hosts who publish their own stream to SRS, played by everyone from SRS.
//
// The host invites a member (the member panel's "Invite to stage"); the invitee's page shows a
// prompt and does nothing else (no camera, nothing sent) until the user accepts. On accept
// livehub sends this page its own publish credentials (`stage-credentials`); only then is the
// camera started and published to SRS over WHIP. Every page plays the main stream and each live
// guest's stream (WHEP from SRS) in one grid. No media goes browser to browser.

import { playWhep } from '/sdk/livehub-client.js';
import { copyField, errors, h } from './ui.js';
import { createPublisher } from './publisher.js';

const GUEST_RETRY_MS = 2000;
const GUEST_RETRIES = 3;

/** One guest's stream, played over WHEP while the guest is live. */
function createGuestTile(guest, playUrl) {
  const video = h('video', { testid: 'guest-video', autoplay: true, playsInline: true, muted: true, dataset: { peerId: guest.peerId } });
  const stateEl = h('span', { class: 'guest-state', testid: 'guest-state', dataset: { peerId: guest.peerId } });
  const caption = h('figcaption', {}, h('span', { class: 'guest-name' }, guest.name || guest.peerId), ' · ', stateEl);
  const el = h('figure', { class: 'tile guest', testid: 'guest-tile', dataset: { peerId: guest.peerId } }, video, caption);
  let session = null; // the SDK's {pc, stream, stop} while playing
  let generation = 0;
  let timer = null;
  let attempts = 0;

  function say(state, text) {
    stateEl.textContent = text;
    stateEl.dataset.state = state;
    el.dataset.state = state;
  }

  async function play() {
    stop();
    const url = playUrl(guest);
    if (!url) { say('idle', 'no WHEP URL'); return; }
    const mine = ++generation;
    const stale = () => mine !== generation;
    say('connecting', 'connecting…');
    let playing;
    try {
      playing = await playWhep(url, { configuration: { iceServers: [] } });
    } catch (err) {
      if (!stale()) retry(err.message);
      return;
    }
    if (stale()) { playing.stop(); return; }
    session = playing;
    video.srcObject = playing.stream;
    const { pc } = playing;
    const follow = () => {
      if (stale()) return;
      if (pc.connectionState === 'connected') { attempts = 0; say('playing', 'on stage'); }
      else if (pc.connectionState === 'failed') retry('the media connection failed');
    };
    pc.onconnectionstatechange = follow;
    follow(); // it may be connected already
  }

  function retry(reason) {
    stop();
    if (attempts < GUEST_RETRIES) {
      attempts += 1;
      say('connecting', `not available yet (${reason}), retrying…`);
      timer = setTimeout(play, GUEST_RETRY_MS * attempts);
    } else {
      say('unavailable', `not available: ${reason}`);
    }
  }

  function stop() {
    generation += 1;
    clearTimeout(timer);
    session?.stop(); // closes the connection, ends the WHEP session
    session = null;
    video.srcObject = null;
  }

  return {
    el,
    peerId: guest.peerId,
    live: false,
    /** The guest as the latest `stage` shows it: plays while it is live. */
    update(next) {
      guest = next;
      caption.querySelector('.guest-name').textContent = next.name || next.peerId;
      if (next.live && !this.live) { attempts = 0; play(); }
      if (!next.live) { stop(); say('idle', 'not publishing yet'); }
      this.live = next.live;
    },
    stop,
  };
}

/**
 * camera (shared); signal(): the SDK's handle of the room (null, and the page says so, while
 * not joined); act(promise): settles an SDK request (refusals come as `error` events: see
 * `refused`); myPeerId(); isHost() for this page;
 * memberName(peerId); say(text): a system line in the chat; playUrl(url): the URL with this
 * page's viewer token (private rooms); onChange(): re-render the member panel.
 */
export function createStage({ camera, signal, act, myPeerId, isHost, memberName, say, playUrl, onChange }) {
  let guests = []; // the public stage: [{peerId, name, streamKey, live, playUrls}]
  const tiles = new Map(); // peerId -> guest tile (guests other than this page)
  const invited = new Set(); // peers this (host) page invited, still unanswered
  let invitation = null; // {from, name}: an invitation to this page, not yet answered
  let credentials = null; // this page's, once it accepted: {streamKey, publish}
  let ownerLive = false; // the owner's page publishes the main stream from its camera

  const grid = h('div', { class: 'stage-grid', testid: 'stage-grid' });
  const status = h('p', { class: 'muted', testid: 'stage-status' }, 'Nobody else is on stage.');
  const publishState = h('p', { class: 'muted', testid: 'stage-publish-state', hidden: true });
  const leaveButton = h('button', { type: 'button', class: 'small danger', testid: 'stage-leave', hidden: true, onclick: leave }, 'Leave the stage');
  const obs = h('div', { class: 'stage-obs', testid: 'stage-obs' });
  const ownTile = h('div', { class: 'stage-own', hidden: true }, camera.tile, camera.stateEl);
  const el = h('section', { class: 'card stage', testid: 'stage-panel' },
    h('h2', {}, 'Stage'), grid, status, ownTile, publishState, leaveButton, obs);
  const promptEl = h('div', { class: 'stage-prompts', testid: 'stage-prompts' });

  const publisher = createPublisher({
    getWhipUrl: () => credentials?.publish?.whipUrl ?? null,
    camera,
    onChange: () => {
      publishState.hidden = !credentials;
      publishState.textContent = publisher.state.replace('The room goes live when SRS accepts the stream.', 'You are on stage.');
    },
  });

  /** The main player's element goes first in the grid (room.js owns the player). */
  function setMain(mainEl) {
    grid.prepend(mainEl);
  }

  function render() {
    const me = myPeerId();
    const others = guests.filter((g) => g.peerId !== me);
    for (const [peerId, tile] of tiles) {
      if (!others.some((g) => g.peerId === peerId)) {
        tile.stop();
        tile.el.remove();
        tiles.delete(peerId);
      }
    }
    for (const guest of others) {
      let tile = tiles.get(guest.peerId);
      if (!tile) {
        tile = createGuestTile(guest, (g) => playUrl(g.playUrls?.whep));
        tiles.set(guest.peerId, tile);
        grid.append(tile.el);
      }
      tile.update(guest);
    }
    const onStage = guests.some((g) => g.peerId === me);
    ownTile.hidden = !(onStage || ownerLive);
    leaveButton.hidden = !onStage;
    status.textContent = guests.length
      ? `On stage: ${guests.map((g) => `${g.name || g.peerId}${g.live ? '' : ' (not publishing yet)'}`).join(', ')}.`
      : 'Nobody else is on stage.';
    el.dataset.guests = String(guests.length);
    onChange();
  }

  function prompt(from, name) {
    invitation = { from, name };
    promptEl.replaceChildren(h('div', { class: 'call-prompt stage-prompt', testid: 'stage-prompt', dataset: { from } },
      h('span', {}, `${name || memberName(from)} (host) invites you on stage. Your camera starts only if you accept.`),
      h('button', { type: 'button', testid: 'stage-accept', onclick: accept }, 'Join the stage'),
      h('button', { type: 'button', class: 'secondary', testid: 'stage-decline', onclick: decline }, 'Decline')));
  }

  function accept() {
    if (!invitation) return;
    const room = signal();
    if (!room) return;
    invitation = null;
    promptEl.replaceChildren();
    act(room.acceptStage()); // its stage-credentials start the camera (handle below)
  }

  function decline() {
    if (!invitation) return;
    const room = signal();
    if (!room) return;
    invitation = null;
    promptEl.replaceChildren();
    act(room.declineStage());
    say('You declined the stage invitation.');
  }

  function leave() {
    act(signal()?.leaveStage());
  }

  function offStage(text) {
    credentials = null;
    publisher.stop();
    camera.stop();
    obs.replaceChildren();
    publishState.hidden = true;
    if (text) say(text);
  }

  return {
    el,
    promptEl,
    setMain,
    /** 'guest', 'invited' or null: what the host's member panel shows for a member. */
    status(peerId) {
      if (guests.some((g) => g.peerId === peerId)) return 'guest';
      return invited.has(peerId) ? 'invited' : null;
    },
    invite(peerId) {
      const room = isHost() ? signal() : null;
      if (!room) return;
      invited.add(peerId);
      act(room.inviteToStage(peerId));
      say(`You invited ${memberName(peerId)} on stage.`);
      onChange();
    },
    remove(peerId) {
      const room = isHost() ? signal() : null;
      if (!room) return;
      invited.delete(peerId);
      act(room.removeFromStage(peerId));
      onChange();
    },
    /** The stage as a room view carries it (`joined`, `room-status`, REST). */
    set(list) {
      if (!Array.isArray(list)) return;
      guests = list;
      for (const g of list) invited.delete(g.peerId);
      render();
    },
    /** A `stage-*` message, or `stage`. */
    handle(msg) {
      switch (msg.type) {
        case 'stage':
          this.set(msg.stage);
          break;
        case 'stage-invite':
          prompt(msg.from, msg.name);
          break;
        case 'stage-credentials':
          credentials = { streamKey: msg.streamKey, publish: msg.publish };
          obs.replaceChildren(h('details', { class: 'obs' },
            h('summary', {}, 'Publish with OBS / ffmpeg instead (private)'),
            copyField('OBS server', msg.publish.obsServer, 'stage-obs-server', { secret: true }),
            copyField('OBS stream key', msg.publish.obsStreamKey, 'stage-stream-key', { secret: true })));
          say('You are on stage: your camera is published to SRS.');
          publisher.start();
          break;
        case 'stage-declined':
          invited.delete(msg.peerId);
          say(`${msg.name || memberName(msg.peerId)} declined the stage invitation.`);
          onChange();
          break;
        case 'stage-removed':
          if (msg.peerId !== myPeerId()) break;
          if (invitation) { // an invitation withdrawn before it was answered
            invitation = null;
            promptEl.replaceChildren();
            say('The host withdrew the stage invitation.');
          } else {
            offStage(msg.by && msg.by !== myPeerId() ? 'A host took you off the stage.' : 'You left the stage.');
          }
          break;
        default:
          break;
      }
    },
    /** A refused stage message (`error` with inReplyTo stage-*). */
    refused(msg) {
      if (msg.inReplyTo === 'stage-invite') invited.clear();
      errors.show(`Stage: ${msg.message ?? msg.code} [${msg.code}]`, `stage:${msg.code}`);
      onChange();
    },
    /** The owner's page goes live from its camera (or stops): its preview shows meanwhile. */
    setOwnerLive(live) {
      if (ownerLive === Boolean(live)) return;
      ownerLive = Boolean(live);
      render();
    },
    /** The socket dropped: an unanswered invitation is gone; publishing goes on. */
    dropped() {
      invitation = null;
      promptEl.replaceChildren();
    },
    /** The page leaves the room: nothing of the stage goes on. */
    stopAll() {
      invitation = null;
      promptEl.replaceChildren();
      offStage();
      for (const tile of tiles.values()) { tile.stop(); tile.el.remove(); }
      tiles.clear();
    },
  };
}

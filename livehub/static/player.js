// The room's player: WHEP from SRS (the SDK's playWhep), only while the room is live; retries a
// few times because SRS may need a moment after on_publish before the stream plays.

import { playWhep } from '/sdk/livehub-client.js';
import { h } from './ui.js';

const PLAYER_TIMEOUT_MS = 10000;
const AUTO_RETRIES = 3;

/** `getRoom()` answers the room as the page knows it; `idleText()` what to say when not live. */
export function createPlayer({ getRoom, idleText }) {
  const video = h('video', { testid: 'player-video', autoplay: true, playsInline: true, muted: true });
  const stateEl = h('div', { class: 'player-state', testid: 'player-state' });
  const retryButton = h('button', { type: 'button', testid: 'player-retry', hidden: true, onclick: () => player.start({ manual: true }) }, 'Try again');
  const el = h('section', { class: 'card player' },
    h('h2', {}, 'Stream'),
    h('div', { class: 'player-frame' }, video, h('div', { class: 'player-overlay' }, stateEl, retryButton)));

  const player = {
    el,
    session: null, // the SDK's {pc, stream, stop} while playing
    timeout: null,
    generation: 0,
    attempts: 0, // automatic retries since the last manual start
    retryTimer: null,
    setState(state, text) {
      stateEl.textContent = text;
      stateEl.dataset.state = state;
      video.controls = state === 'playing';
      retryButton.hidden = !(state === 'unavailable' && getRoom()?.status === 'live');
    },
    async start({ manual = false } = {}) {
      this.stop();
      if (manual) this.attempts = 0;
      const room = getRoom();
      if (room?.status !== 'live') { this.setState('idle', idleText()); return; }
      const whep = room.playUrls?.whep;
      if (!whep) { this.setState('unavailable', 'Stream not available: the room has no WHEP URL.'); return; }
      const generation = ++this.generation;
      const stale = () => generation !== this.generation;
      this.setState('connecting', 'Connecting to the stream…');
      const fail = (reason) => {
        if (stale()) return;
        this.stop();
        const retry = getRoom()?.status === 'live' && this.attempts < AUTO_RETRIES;
        this.setState('unavailable', `Stream not available: ${reason}.${retry ? ' Retrying…' : ''}`);
        if (retry) {
          this.attempts += 1;
          this.retryTimer = setTimeout(() => this.start(), 2000 * this.attempts);
        }
      };
      const timeout = setTimeout(() => fail('no media from SRS after 10 s'), PLAYER_TIMEOUT_MS);
      this.timeout = timeout;
      let session;
      try {
        session = await playWhep(whep, { configuration: { iceServers: [] } });
      } catch (err) {
        clearTimeout(timeout);
        fail(err.message);
        return;
      }
      if (stale()) { session.stop(); return; }
      this.session = session;
      video.srcObject = session.stream;
      const { pc } = session;
      const follow = () => {
        if (stale()) return;
        if (pc.connectionState === 'connected') { clearTimeout(timeout); this.setState('playing', ''); }
        else if (pc.connectionState === 'failed') fail('the media connection to SRS failed');
        else if (pc.connectionState === 'disconnected') this.setState('connecting', 'Connection interrupted, waiting…');
      };
      pc.onconnectionstatechange = follow;
      follow(); // it may be connected already
    },
    stop(text) {
      this.generation++;
      clearTimeout(this.retryTimer);
      clearTimeout(this.timeout);
      this.session?.stop(); // closes the connection, ends the WHEP session
      this.session = null;
      video.srcObject = null;
      if (text) this.setState('idle', text);
    },
  };
  return player;
}

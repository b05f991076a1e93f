// The owner panel (only with a valid owner token; viewers never get `publish`): go live from
// the camera, stop, close the room (two clicks), and the OBS / ffmpeg settings.

import { copyField, h } from './ui.js';

const ARM_MS = 4000;

export function createOwnerPanel({ onGoLive, onStopLive, onClose }) {
  const goLive = h('button', { type: 'button', testid: 'go-live-button', onclick: () => onGoLive() }, 'Go live from camera');
  const stopLive = h('button', { type: 'button', testid: 'stop-live-button', onclick: () => onStopLive() }, 'Stop publishing');
  const close = h('button', { type: 'button', class: 'danger', testid: 'close-room-button', onclick: clickClose });
  const publishState = h('p', { class: 'muted', testid: 'publish-state' });
  const el = h('section', { class: 'card owner', testid: 'owner-panel', hidden: true },
    h('h2', {}, 'Owner'), h('div', { class: 'actions' }, goLive, stopLive, close), publishState);
  let armed = false;
  let obsShown = false;
  let last = null;

  function clickClose() {
    if (!armed) {
      armed = true;
      if (last) render(last);
      setTimeout(() => { armed = false; if (last) render(last); }, ARM_MS);
      return;
    }
    armed = false;
    if (last) render(last);
    onClose();
  }

  /** Bring the panel up to date (in place, so an opened <details> stays open). */
  function render(state) {
    last = state;
    const { visible, ended, publish, publishing, publishText } = state;
    el.hidden = !visible;
    if (!visible) return;
    goLive.disabled = ended || !publish?.whipUrl || publishing;
    stopLive.hidden = !publishing;
    close.disabled = ended;
    close.textContent = armed ? 'Click again to close the room' : 'Close room';
    publishState.textContent = publishText;
    if (publish && !obsShown) {
      obsShown = true;
      el.append(h('details', { class: 'obs' },
        h('summary', {}, 'OBS / ffmpeg settings (private)'),
        copyField('OBS server', publish.obsServer, 'obs-server', { secret: true }),
        copyField('OBS stream key', publish.obsStreamKey, 'stream-key', { secret: true }),
        copyField('RTMP URL (ffmpeg)', publish.rtmpUrl, 'rtmp-url', { secret: true }),
        copyField('WHIP URL', publish.whipUrl, 'whip-url', { secret: true })));
    }
  }

  return { el, render };
}

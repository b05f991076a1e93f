// The local camera, asked for when needed and shared by the stage and go-live.

import { h } from './ui.js';

export function createCamera() {
  const video = h('video', { testid: 'local-video', autoplay: true, playsInline: true, muted: true });
  const caption = h('figcaption', {}, 'You · camera off');
  const stateEl = h('p', { class: 'muted', testid: 'camera-state' }, 'Camera: not started (it starts when you join the stage or go live).');
  const tile = h('figure', { class: 'tile local' }, video, caption);
  let promise = null;

  function say(state, text) {
    stateEl.textContent = text;
    stateEl.dataset.state = state;
  }

  /** The camera stream (with microphone if there is one), or null without a camera. */
  function get() {
    promise ??= (async () => {
      if (!navigator.mediaDevices?.getUserMedia) {
        say('none', 'No camera: this browser (or an insecure http:// page) has no getUserMedia.');
        return null;
      }
      let lastError = null;
      for (const constraints of [{ video: true, audio: true }, { video: true }]) {
        try {
          const stream = await navigator.mediaDevices.getUserMedia(constraints);
          video.srcObject = stream;
          caption.textContent = 'You';
          say('on', `Camera on${constraints.audio ? ' with microphone' : ' (no microphone)'}.`);
          return stream;
        } catch (err) {
          lastError = err;
        }
      }
      say('none', `No camera (${lastError.name}: ${lastError.message}).`);
      return null;
    })();
    return promise;
  }

  function stop() {
    const was = promise;
    promise = null;
    was?.then((s) => {
      s?.getTracks().forEach((t) => t.stop());
      if (s && video.srcObject === s) {
        video.srcObject = null;
        caption.textContent = 'You · camera off';
        say('off', 'Camera off.');
      }
    });
  }

  return { get, stop, stateEl, tile };
}

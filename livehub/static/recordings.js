// The recordings of an ended room: each MP4 SRS recorded (one per publish), playable in a
// <video> (livehub answers range requests, so it seeks). Shown once the room has ended and
// has any; a room that did not record has none.

import { describe, livehub } from './api.js';
import { errors, h } from './ui.js';

function duration(ms) {
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`;
}

function size(bytes) {
  return bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${Math.ceil(bytes / 1e3)} kB`;
}

export function createRecordings({ roomId, token = () => null }) {
  const list = h('div', { class: 'recordings', testid: 'recordings-list' });
  const el = h('section', { class: 'card', testid: 'recordings', hidden: true }, h('h2', {}, 'Recordings'), list);
  let loaded = false;

  async function load() {
    if (loaded) return;
    loaded = true;
    let recordings = [];
    try {
      // a private room's need its viewer token; the listed urls then carry one
      recordings = await livehub.recordings(roomId, { token: token() });
    } catch (err) {
      loaded = false; // try again on the next change
      errors.show(describe('Could not list the recordings', err), 'recordings');
      return;
    }
    errors.clear('recordings');
    list.replaceChildren(...recordings.map((rec, n) => h('figure', { testid: 'recording', dataset: { recordingId: rec.id } },
      h('video', { src: rec.url, controls: true, preload: 'metadata', playsInline: true }),
      h('figcaption', {}, `Part ${n + 1} · ${new Date(rec.startedAt).toLocaleString()} · ${duration(rec.durationMs)} · ${size(rec.sizeBytes)}`))));
    el.hidden = recordings.length === 0;
  }

  return { el, load };
}

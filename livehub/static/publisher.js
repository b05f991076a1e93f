// Go live from the camera: WHIP to SRS (owner only; the WHIP URL carries the publish token),
// with the SDK's publishWhip (one offer once ICE gathering is done; stop() ends the session).

import { publishWhip } from '/sdk/livehub-client.js';
import { errors } from './ui.js';

/** `getWhipUrl()` answers the owner's WHIP URL or null; `onChange()` re-renders the owner panel. */
export function createPublisher({ getWhipUrl, camera, onChange }) {
  return {
    session: null, // the SDK's {pc, stop} once SRS answered
    attempt: null, // the start in progress (a newer start or a stop makes it stale)
    active: false,
    state: 'Not publishing. Go live from the camera here, or publish with OBS / ffmpeg using the settings below.',
    set(state, active = this.active) {
      this.state = state;
      this.active = active;
      onChange();
    },
    async start() {
      const whipUrl = getWhipUrl();
      if (!whipUrl) return;
      errors.clear('publish');
      const attempt = {};
      this.attempt = attempt;
      this.set('Starting the camera…', true);
      const stream = await camera.get();
      // stopped while the browser asked for the camera (its prompt), or started again
      if (this.attempt !== attempt) return;
      if (!stream?.getVideoTracks().length) {
        this.attempt = null;
        this.set('Not publishing: no camera available.', false);
        errors.show('Cannot go live: no camera is available in this browser.', 'publish');
        return;
      }
      this.set('Sending the offer to SRS…');
      let session;
      try {
        session = await publishWhip(whipUrl, stream, { configuration: { iceServers: [] } });
      } catch (err) {
        if (this.attempt === attempt) this.fail(err.message);
        return;
      }
      if (this.attempt !== attempt) { session.stop(); return; }
      this.session = session;
      const { pc } = session;
      const follow = () => {
        if (this.session !== session) return;
        if (pc.connectionState === 'connected') this.set('Publishing from the camera. The room goes live when SRS accepts the stream.');
        if (pc.connectionState === 'failed') this.fail('the media connection to SRS failed');
      };
      pc.onconnectionstatechange = follow;
      this.set('Connecting to SRS…');
      follow(); // it may be connected already
    },
    fail(reason) {
      this.stop();
      this.set(`Not publishing: ${reason}.`, false);
      errors.show(`Go live failed: ${reason}.`, 'publish');
    },
    stop() {
      const was = this.session ?? this.attempt;
      this.session?.stop();
      this.session = null;
      this.attempt = null;
      if (was) this.set('Not publishing.', false);
    },
  };
}

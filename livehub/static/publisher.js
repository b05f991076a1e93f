// Go live from the camera: WHIP to SRS (owner only; the WHIP URL carries the publish token).

import { errors } from './ui.js';
import { deleteResource, exchangeSdp, iceGathered } from './webrtc.js';

/** `getWhipUrl()` answers the owner's WHIP URL or null; `onChange()` re-renders the owner panel. */
export function createPublisher({ getWhipUrl, camera, onChange }) {
  return {
    pc: null,
    location: null,
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
      this.set('Starting the camera…', true);
      const stream = await camera.get();
      if (!stream?.getVideoTracks().length) {
        this.set('Not publishing: no camera available.', false);
        errors.show('Cannot go live: no camera is available in this browser.', 'publish');
        return;
      }
      const pc = new RTCPeerConnection({ iceServers: [] });
      this.pc = pc;
      for (const track of stream.getTracks()) pc.addTransceiver(track, { direction: 'sendonly', streams: [stream] });
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
        const answer = await exchangeSdp(whipUrl, pc);
        if (this.pc !== pc) { deleteResource(answer.location); return; }
        this.location = answer.location;
        await pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
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
      deleteResource(this.location);
      this.location = null;
      this.pc?.close();
      const was = this.pc;
      this.pc = null;
      if (was) this.set('Not publishing.', false);
    },
  };
}

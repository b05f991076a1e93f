// Co-host calls: one RTCPeerConnection per remote member, signaled through livehub
// (offer / answer / candidate relayed by the WebSocket).
//
// The console asks before it answers: an incoming offer opens no connection, camera or
// microphone and sends nothing until the user accepts it at a prompt that names the caller and
// the caller's role; declining sends nothing either (the protocol has no decline message: the
// caller's side times out or hangs up). Offers from a peer this page is already in a call with
// (it asked for the call, or accepted it) are answered, and relays without `to` (room-wide,
// from anyone) are ignored: a call is always addressed.

import { errors, h } from './ui.js';

/**
 * send(msg): send on the room's socket; myPeerId(): this page's peer id;
 * memberName(peerId); say(text): a system line in the chat; onChange(): re-render members.
 */
export function createCalls({ roomId, camera, send, myPeerId, memberName, memberRole, say, onChange }) {
  const calls = new Map(); // peerId -> Call
  const incoming = new Map(); // peerId -> {offer, candidates, el}: asked, not yet accepted
  const MAX_EARLY_CANDIDATES = 64; // kept per prompt until the user answers it
  const prompts = h('div', { class: 'call-prompts', testid: 'call-prompts' });
  const tiles = h('div', { class: 'tiles', testid: 'call-tiles' }, camera.tile);
  const el = h('section', { class: 'card calls' },
    h('h2', {}, 'Co-host call'),
    h('p', { class: 'muted' }, 'Call another member to talk peer to peer. An incoming call waits for you to accept it: nothing is sent and your camera stays off until you do.'),
    camera.stateEl, tiles);

  class Call {
    constructor(peerId) {
      this.peerId = peerId;
      this.chain = Promise.resolve(); // signaling for one call is handled strictly in order
      this.pending = []; // candidates that arrived before the remote description
      this.pc = new RTCPeerConnection({ iceServers: [] });
      this.remote = new MediaStream();
      this.video = h('video', { testid: 'remote-video', autoplay: true, playsInline: true, dataset: { peerId } });
      this.stateEl = h('span', { class: 'call-state', testid: 'call-state', dataset: { peerId } });
      this.unmute = h('button', { type: 'button', class: 'small', hidden: true, onclick: () => { this.video.muted = false; this.unmute.hidden = true; } }, 'Unmute');
      this.tile = h('figure', { class: 'tile', testid: 'remote-tile', dataset: { peerId } },
        this.video, h('figcaption', {}, memberName(peerId), ' · ', this.stateEl, ' ', this.unmute));
      tiles.append(this.tile);
      this.pc.onicecandidate = (e) => send({ type: 'candidate', roomId, to: peerId, payload: e.candidate ? e.candidate.toJSON() : null });
      this.pc.ontrack = (e) => {
        this.remote.addTrack(e.track);
        if (this.video.srcObject !== this.remote) {
          this.video.srcObject = this.remote;
          // Autoplay with sound may be refused before any click on the page: play muted then.
          this.video.play().catch(() => {
            this.video.muted = true;
            this.unmute.hidden = false;
            this.video.play().catch(() => {});
          });
        }
      };
      // A data channel only to learn at once that the other side hung up: its pc.close()
      // closes the channel here, long before ICE would notice the silence.
      this.pc.ondatachannel = (e) => this.watch(e.channel);
      this.pc.onconnectionstatechange = () => {
        const s = this.pc.connectionState;
        if (s === 'connected') this.setState('connected', 'connected');
        else if (s === 'connecting') this.setState('connecting', 'connecting…');
        else if (s === 'disconnected') this.setState('connecting', 'connection interrupted…');
        else if (s === 'failed') this.end('the connection failed');
        else if (s === 'closed') this.end('call ended');
      };
    }
    watch(channel) {
      this.channel = channel;
      channel.onclose = () => this.end('the other side hung up');
    }
    setState(state, text) {
      this.stateEl.textContent = text;
      this.stateEl.dataset.state = state;
      this.tile.dataset.state = state;
    }
    run(step) {
      this.chain = this.chain.then(step).catch((err) => {
        if (calls.get(this.peerId) !== this) return;
        errors.show(`Call with ${memberName(this.peerId)} failed: ${err.message}`, `call:${this.peerId}`);
        this.end('failed');
      });
    }
    async addLocalMedia() {
      const stream = await camera.get();
      const kinds = new Set();
      for (const track of stream?.getTracks() ?? []) {
        this.pc.addTrack(track, stream);
        kinds.add(track.kind);
      }
      // Without a camera we still want to receive: ask for the missing kinds receive-only.
      const existing = new Set(this.pc.getTransceivers().map((t) => t.receiver.track.kind));
      for (const kind of ['video', 'audio']) {
        if (!kinds.has(kind) && !existing.has(kind)) this.pc.addTransceiver(kind, { direction: 'recvonly' });
      }
    }
    async addCandidate(payload) {
      if (!this.pc.remoteDescription) { this.pending.push(payload); return; }
      try {
        // null or an empty candidate is the end-of-candidates marker.
        if (payload === null || payload === undefined || payload.candidate === '') await this.pc.addIceCandidate();
        else await this.pc.addIceCandidate(payload);
      } catch (err) {
        console.warn('addIceCandidate', err);
      }
    }
    async flushCandidates() {
      const queued = this.pending.splice(0);
      for (const c of queued) await this.addCandidate(c);
    }
    end(reason, { quiet = false } = {}) {
      if (this.ended) return;
      this.ended = true;
      if (calls.get(this.peerId) === this) calls.delete(this.peerId);
      this.pc.onconnectionstatechange = null;
      if (this.channel) this.channel.onclose = null;
      this.pc.close();
      this.video.srcObject = null;
      this.tile.remove();
      if (!quiet) say(`Call with ${memberName(this.peerId)}: ${reason}.`);
      onChange();
    }
  }

  function start(peerId) {
    calls.get(peerId)?.end('replaced', { quiet: true });
    errors.clear(`call:${peerId}`);
    const call = new Call(peerId);
    calls.set(peerId, call);
    call.setState('calling', 'calling…');
    onChange();
    call.watch(call.pc.createDataChannel('call'));
    call.run(async () => {
      await call.addLocalMedia();
      await call.pc.setLocalDescription(await call.pc.createOffer());
      send({ type: 'offer', roomId, to: peerId, payload: call.pc.localDescription.toJSON() });
    });
  }

  /** Answer `offer` from `from` (the user wants this call), with candidates that came early. */
  function answer(from, offer, early = []) {
    calls.get(from)?.end('replaced', { quiet: true });
    const call = new Call(from);
    calls.set(from, call);
    call.pending.push(...early);
    call.setState('answering', 'answering…');
    onChange();
    call.run(async () => {
      await call.pc.setRemoteDescription(offer);
      await call.flushCandidates();
      await call.addLocalMedia();
      await call.pc.setLocalDescription(await call.pc.createAnswer());
      send({ type: 'answer', roomId, to: from, payload: call.pc.localDescription.toJSON() });
    });
  }

  const who = (peerId) => {
    const role = memberRole(peerId);
    return `${memberName(peerId)} (${role ?? 'not listed: a viewer of a crowded room'})`;
  };

  /** Ask the user about an offer from `from`; a newer offer from the same peer replaces it. */
  function ask(from, offer) {
    const known = incoming.get(from);
    if (known) {
      known.offer = offer;
      known.candidates = [];
      return;
    }
    const role = memberRole(from);
    const prompt = {
      offer,
      candidates: [],
      el: h('div', { class: 'call-prompt', testid: 'call-prompt', role: 'alertdialog', dataset: { peerId: from, role: role ?? '' } },
        h('p', {}, h('strong', { testid: 'call-prompt-name' }, memberName(from)), ' ',
          role ? h('span', { class: 'tag', testid: 'call-prompt-role' }, role) : h('span', { class: 'muted', testid: 'call-prompt-role' }, '(not listed)'),
          ' is calling you. Accepting turns on your camera and microphone.'),
        h('div', { class: 'actions' },
          h('button', { type: 'button', class: 'small', testid: 'call-accept', dataset: { peerId: from }, onclick: () => decide(from, true) }, 'Accept'),
          h('button', { type: 'button', class: 'small danger', testid: 'call-decline', dataset: { peerId: from }, onclick: () => decide(from, false) }, 'Decline'))),
    };
    incoming.set(from, prompt);
    prompts.append(prompt.el);
    say(`${who(from)} is calling you: accept or decline at the top of the page.`);
    onChange();
  }

  function decide(from, accepted) {
    const prompt = incoming.get(from);
    if (!prompt) return;
    dismiss(from);
    if (accepted) answer(from, prompt.offer, prompt.candidates);
    else say(`You declined the call from ${memberName(from)}.`);
  }

  function dismiss(peerId) {
    incoming.get(peerId)?.el.remove();
    incoming.delete(peerId);
  }

  /** An offer, answer or candidate relayed by livehub. */
  function onSignal(msg) {
    const from = msg.from;
    const me = myPeerId();
    // only what is addressed to this page: a room-wide relay is never a call to us
    if (!from || from === me || !me || msg.to !== me) return;
    const call = calls.get(from);
    if (msg.type === 'offer') {
      if (call && call.pc.signalingState === 'have-local-offer' && me > from) {
        return; // both called at once: the peer with the larger id keeps its own offer
      }
      // in a call with this peer already (this page called, or accepted): no need to ask
      if (call) answer(from, msg.payload);
      else ask(from, msg.payload);
    } else if (msg.type === 'candidate' && !call && incoming.has(from)) {
      const early = incoming.get(from).candidates;
      if (early.length < MAX_EARLY_CANDIDATES) early.push(msg.payload);
    } else if (msg.type === 'answer' && call) {
      call.run(async () => {
        if (call.pc.signalingState !== 'have-local-offer') return;
        await call.pc.setRemoteDescription(msg.payload);
        await call.flushCandidates();
      });
    } else if (msg.type === 'candidate' && call) {
      call.run(() => call.addCandidate(msg.payload));
    }
  }

  return {
    el,
    /** Where incoming calls ask: the room page puts it under its head, kept in view. */
    promptsEl: prompts,
    start(peerId) {
      dismiss(peerId); // calling back someone who is calling: that is our call now
      start(peerId);
    },
    onSignal,
    has: (peerId) => calls.has(peerId),
    end(peerId, reason, options) {
      dismiss(peerId);
      calls.get(peerId)?.end(reason, options);
    },
    endAll(reason) {
      for (const peerId of [...incoming.keys()]) dismiss(peerId);
      for (const call of [...calls.values()]) call.end(reason, { quiet: true });
    },
  };
}

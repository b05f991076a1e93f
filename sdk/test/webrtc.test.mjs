// WHIP and WHEP (playWhep, publishWhip) with a stand-in RTCPeerConnection and fetch: Node has
// no WebRTC. What is checked is the HTTP exchange SRS expects: the offer POSTed as
// application/sdp once ICE gathering is done, the answer applied, the session's Location
// DELETEd by stop(), refusals as LivehubError. (Real media: tests/e2e, tests/webrtc.)

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

import { ROOT } from "./server.mjs";

const sdk = await import(
  `data:text/javascript;base64,${Buffer.from(readFileSync(join(ROOT, "sdk", "livehub-client.js"))).toString("base64")}`
);

class FakePeerConnection {
  static made = [];
  constructor(configuration) {
    this.configuration = configuration;
    this.transceivers = [];
    this.iceGatheringState = "gathering";
    this.listeners = new Map();
    this.closed = false;
    FakePeerConnection.made.push(this);
  }
  addTransceiver(what, init) {
    this.transceivers.push([what, init]);
  }
  async createOffer() {
    return { type: "offer", sdp: "v=0 offer" };
  }
  async setLocalDescription(description) {
    this.localDescription = { ...description, sdp: `${description.sdp} +candidates` };
    setTimeout(() => {
      this.iceGatheringState = "complete";
      for (const fn of this.listeners.get("icegatheringstatechange") ?? []) fn();
    }, 5);
  }
  async setRemoteDescription(description) {
    this.remoteDescription = description;
  }
  addEventListener(type, fn) {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), fn]);
  }
  removeEventListener(type, fn) {
    this.listeners.set(type, (this.listeners.get(type) ?? []).filter((f) => f !== fn));
  }
  close() {
    this.closed = true;
  }
}

class FakeStream {
  constructor() {
    this.tracks = [];
  }
  addTrack(track) {
    this.tracks.push(track);
  }
  getTracks() {
    return ["audio-track", "video-track"];
  }
}

function fakeFetch(status, { location = "/rtc/v1/whep/?session=abc" } = {}) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, ...init });
    if (init.method === "DELETE") return new Response(null, { status: 200 });
    const headers = location ? { Location: location } : {};
    return new Response(status === 201 ? "v=0 answer" : "bad stream", { status, headers });
  };
  return { fetch, calls };
}

test("playWhep posts the gathered offer, applies the answer, stop() ends the session", async () => {
  const { fetch, calls } = fakeFetch(201);
  const url = "http://srs.example:1985/rtc/v1/whep/?app=live&stream=s";
  const player = await sdk.playWhep(url, { RTCPeerConnection: FakePeerConnection, MediaStream: FakeStream, fetch });
  const pc = player.pc;
  assert.deepEqual(pc.transceivers.map(([kind, init]) => [kind, init.direction]), [
    ["audio", "recvonly"],
    ["video", "recvonly"],
  ]);
  assert.equal(calls[0].method, "POST");
  assert.equal(calls[0].headers["Content-Type"], "application/sdp");
  assert.equal(calls[0].body, "v=0 offer +candidates"); // sent after gathering
  assert.deepEqual(pc.remoteDescription, { type: "answer", sdp: "v=0 answer" });
  pc.ontrack({ track: "t1" });
  assert.deepEqual(player.stream.tracks, ["t1"]);
  player.stop();
  assert.ok(pc.closed);
  assert.deepEqual(calls[1], { url: "http://srs.example:1985/rtc/v1/whep/?session=abc", method: "DELETE" });
});

test("publishWhip sends every track; a refusal is a LivehubError and closes the connection", async () => {
  const { fetch } = fakeFetch(201, { location: null });
  const camera = new FakeStream();
  const published = await sdk.publishWhip("http://srs/whip", camera, { RTCPeerConnection: FakePeerConnection, fetch });
  assert.deepEqual(published.pc.transceivers.map(([track, init]) => [track, init.direction]), [
    ["audio-track", "sendonly"],
    ["video-track", "sendonly"],
  ]);
  published.stop();

  const refused = fakeFetch(403);
  await assert.rejects(
    sdk.publishWhip("http://srs/whip", camera, { RTCPeerConnection: FakePeerConnection, fetch: refused.fetch }),
    (err) => err instanceof sdk.LivehubError && err.code === "whip_failed" && err.status === 403,
  );
  assert.ok(FakePeerConnection.made.at(-1).closed);
  await assert.rejects(
    sdk.playWhep("http://srs/whep", { RTCPeerConnection: undefined }),
    (err) => err.code === "no_webrtc",
  );
});

import { Livehub, LivehubError, playWhep, publishWhip, type ChatEvent } from "../../livehub-client.js";
async function main() {
  const lh = new Livehub({ baseUrl: "http://x" });
  const room = await lh.createRoom({ title: "t", record: true });
  const client = lh.connect({ minDelay: 100 });
  client.on("reconnecting", ({ attempt, delay }) => console.log(attempt + delay));
  const h = await client.join(room.id, { role: "host", token: room.ownerToken });
  h.on("chat", (m: ChatEvent) => console.log(m.text.length));
  h.on("peer-joined", ({ peer }) => console.log(peer.name));
  const mine = await h.chat("x"); console.log(mine.ts);
  for await (const r of lh.listRooms({ limit: 2 })) console.log(r.playUrls.whep);
  try { await lh.getRoom("x"); } catch (e) { if (e instanceof LivehubError) console.log(e.code, e.retryAfter); }
  const { stream, stop } = await playWhep(room.playUrls.whep); console.log(stream); stop();
  const published = await publishWhip(room.publish.whipUrl, stream!, { iceGatheringTimeout: 500 });
  published.stop();
  h.send(null, "offer", { sdp: "" });
  h.on("stage", (event) => console.log(event.type, event.roomId));
  h.on("stage", (event) => console.log(event.stage.map((g) => g.playUrls.whep)));
  h.on("stage-invite", ({ from }) => console.log(from));
  console.log(h.room.stage.map((g) => g.peerId), h.room.visibility === "private");
  h.on("lost", ({ error }) => console.log(error.code));
  client.on("close", ({ code, error }) => { if (code === 1008 || error?.code === "invalid_url") client.close(); });
  lh.connect({ maxQueue: 50, maxQueueBytes: 65536 }).on("error", ({ code, details }) => console.log(code, details));
  const creds = await h.acceptStage(); console.log(creds.publish.whipUrl, h.stageToken);
  const sent: number = await h.inviteToStage("p"); console.log(sent);
  await h.declineStage(); await h.removeFromStage("p"); await h.leaveStage();
  const gone = await h.deleteChat(mine.id); console.log(gone.id);
  await h.mute("p", 60); await h.unmute("p");
  const settings = await h.setSlowMode(5); console.log(settings.slowMode);
  h.on("muted", ({ until }) => console.log(until));
  const page = await lh.listRoomsPage({ limit: 1 }); console.log(page.total ?? "unknown");
  await lh.createRoom({ title: "p", visibility: "private" });
  await client.join(room.id, { token: null, stageToken: "s" });
  // @ts-expect-error: a chat event has no `payload`
  h.on("chat", (m) => console.log(m.payload));
  await h.leave(); client.close();
}
main();
async function serverShapes(lh: Livehub, roomId: string, ownerToken: string) {
  // joined carries the room's slow mode (docs/protocol.md, joined); the handle keeps it
  const client = lh.connect();
  const h = await client.join(roomId, { token: ownerToken, role: "host" });
  const slow: number = h.data.slowMode;
  client.on("joined", (event) => console.log(event.slowMode + 1));
  // a viewer token: {token, expiresAt} (POST /api/rooms/{id}/viewer-tokens)
  const made = await lh.createViewerToken(roomId, { token: ownerToken, ttl: 60, sub: "u1", name: "Bo" });
  const viewerToken: string = made.token;
  const expiresAt: number = made.expiresAt;
  await client.join(roomId, { token: viewerToken });
  console.log(slow, expiresAt);
}

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
  // @ts-expect-error: a chat event has no `payload`
  h.on("chat", (m) => console.log(m.payload));
  await h.leave(); client.close();
}
main();

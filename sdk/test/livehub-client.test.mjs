// The SDK against a real livehub (started here), loaded from /sdk/livehub-client.js over HTTP:
// REST (create, get, list pages, close, members, recordings, errors), signaling (join, chat
// with request ids, relays, refusals, the stage, presence in a counted room), reconnect and
// rejoin after the server restarts; and, on a socket the test scripts, what a real server
// cannot be made to do on cue (drops in the middle of a rejoin, refused rejoins, backoff).
// Run: node --experimental-websocket --test sdk/test/*.test.mjs (tests/test_sdk.py: make test)

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";

import { ADMIN_TOKEN, Livehub as Server, ROOT, eventually, importServedSdk } from "./server.mjs";

const server = new Server();
let sdk;
let lh;

before(async () => {
  await server.start();
  const served = await importServedSdk(server.url);
  sdk = served.sdk;
  // the same file, not a copy
  assert.equal(served.text, readFileSync(join(ROOT, "sdk", "livehub-client.js"), "utf8"));
  assert.match(served.contentType, /^text\/javascript/);
  lh = new sdk.Livehub({ baseUrl: server.url, WebSocket: globalThis.WebSocket });
});

after(async () => {
  await server.close();
});

async function rejects(promise, code, status) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof sdk.LivehubError, `${err}`);
    assert.equal(err.code, code);
    if (status !== undefined) assert.equal(err.status, status);
    return true;
  });
}

describe("REST", () => {
  test("create, get (owner and public), close", async () => {
    const room = await lh.createRoom({ title: "SDK room", record: true });
    assert.equal(room.title, "SDK room");
    assert.equal(room.record, true);
    assert.ok(room.ownerToken && room.publish.token);
    const seen = await lh.getRoom(room.id);
    assert.equal(seen.id, room.id);
    assert.equal(seen.publish, undefined); // no secret without the owner's token
    const owner = await lh.getRoom(room.id, { token: room.ownerToken });
    assert.equal(owner.publish.token, room.publish.token);
    const closed = await lh.closeRoom(room.id, { token: room.ownerToken });
    assert.equal(closed.room.status, "ended");
  });

  test("list follows Link rel=next through every page", async () => {
    const made = [];
    for (let n = 0; n < 5; n++) made.push((await lh.createRoom({ title: `page ${n}` })).id);
    const page = await lh.listRoomsPage({ limit: 2, status: "preparing" });
    assert.equal(page.rooms.length, 2);
    assert.ok(page.total >= 5 && page.next.startsWith(server.url));
    const seen = [];
    for await (const room of lh.listRooms({ limit: 2, status: "preparing" })) seen.push(room.id);
    assert.equal(new Set(seen).size, seen.length); // nothing twice
    assert.equal(seen.length, page.total);
    assert.deepEqual(seen.slice(0, 5), [...made].reverse()); // newest first
  });

  test("members, recordings, delete", async () => {
    const room = await lh.createRoom({ title: "members" });
    const members = await lh.members(room.id, { token: room.ownerToken, limit: 10 });
    assert.deepEqual(members, { members: [], total: 0, limit: 10, offset: 0 });
    assert.deepEqual(await lh.recordings(room.id), []);
    await rejects(lh.deleteRecording("rnope", { token: ADMIN_TOKEN }), "recording_not_found", 404);
  });

  test("errors are LivehubError with code, status, details", async () => {
    await rejects(lh.getRoom("nosuchroom"), "room_not_found", 404);
    const room = await lh.createRoom({ title: "errors" });
    await rejects(lh.closeRoom(room.id), "unauthorized", 401);
    await rejects(lh.closeRoom(room.id, { token: "x".repeat(20) }), "forbidden", 403);
    await assert.rejects(lh.createRoom({ title: "" }), (err) => {
      assert.equal(err.code, "validation_error");
      assert.equal(err.status, 400);
      assert.ok("title" in err.details);
      return true;
    });
    // viewer tokens (private rooms): the owner gets one; a wrong token is refused
    const minted = await lh.createViewerToken(room.id, { token: room.ownerToken, ttl: 60 });
    assert.equal(typeof minted.token, "string");
    assert.ok(minted.expiresAt > Date.now());
    await assert.rejects(lh.createViewerToken(room.id, { token: "x".repeat(20) }), (err) => {
      assert.ok(err instanceof sdk.LivehubError);
      assert.equal(err.status, 403);
      return true;
    });
    const down = new sdk.Livehub({ baseUrl: "http://127.0.0.1:9" });
    await rejects(down.getRoom("x"), "network_error", 0);
  });

  test("retryAfter comes from Retry-After (or details.retryAfter)", async () => {
    const fake = async () =>
      new Response(
        JSON.stringify({ error: "Too many", code: "rate_limited", details: { retryAfter: 7 } }),
        { status: 429, headers: { "Retry-After": "3", "Content-Type": "application/json" } },
      );
    const limited = new sdk.Livehub({ baseUrl: "http://x.invalid", fetch: fake });
    await assert.rejects(limited.createRoom({ title: "t" }), (err) => {
      assert.deepEqual([err.code, err.status, err.retryAfter], ["rate_limited", 429, 3]);
      assert.deepEqual(err.details, { retryAfter: 7 });
      return true;
    });
  });
});

describe("REST against a hostile or mistaken server", () => {
  /** A fetch that answers `answer(url)` and records every request. */
  function recording(answer) {
    const calls = [];
    const fetch = async (url, init) => {
      calls.push({ url: String(url), authorization: init.headers.Authorization ?? null });
      return answer(String(url));
    };
    return { calls, fetch };
  }

  test("the bearer token goes to the livehub's own origin only, never to a Link elsewhere", async () => {
    const { calls, fetch } = recording((url) =>
      new Response("[]", {
        status: 200,
        headers: url.startsWith("http://live.test/")
          ? { Link: '<http://elsewhere.test/api/rooms?page=2>; rel="next"' }
          : {},
      }),
    );
    const admin = new sdk.Livehub({ baseUrl: "http://live.test", token: "admin-secret", fetch });
    const seen = [];
    for await (const room of admin.listRooms()) seen.push(room);
    assert.deepEqual(calls, [
      { url: "http://live.test/api/rooms", authorization: "Bearer admin-secret" },
      { url: "http://elsewhere.test/api/rooms?page=2", authorization: null },
    ]);
  });

  test("recordings keep only http(s) URLs: a javascript: one is no <a href> waiting to run", async () => {
    const rows = [
      { id: "r1", url: "/api/recordings/r1/file" },
      { id: "r2", url: "javascript:alert(document.domain)" },
      { id: "r3", url: " JavaScript:alert(1)" },
      { id: "r4", url: "data:text/html,<script>alert(1)</script>" },
      { id: "r5", url: "https://cdn.test/r5.mp4" },
      { id: "r6", url: null },
    ];
    const { fetch } = recording(() => new Response(JSON.stringify(rows), { status: 200 }));
    const list = await new sdk.Livehub({ baseUrl: "http://live.test", fetch }).recordings("room");
    assert.deepEqual(list.map((r) => [r.id, r.url]), [
      ["r1", "http://live.test/api/recordings/r1/file"],
      ["r5", "https://cdn.test/r5.mp4"],
    ]);
  });
});

describe("signaling", () => {
  test("two clients: join, presence, chat with request ids, relays, refusals, leave", async () => {
    const room = await lh.createRoom({ title: "chat" });
    const a = lh.connect();
    const b = lh.connect();
    const frames = [];
    b.on("message", (event) => frames.push(event));
    try {
      const host = await a.join(room.id, { name: "Ana", role: "host", token: room.ownerToken });
      assert.equal(host.role, "host");
      assert.equal(host.room.id, room.id);
      assert.deepEqual([...host.members.keys()], [host.peerId]);
      const joinedSeen = host.once("peer-joined");
      const guest = await b.join(room.id, { name: "Bo" });
      assert.equal(guest.data.type, "joined");
      assert.equal(guest.data.id, undefined); // the handle keeps the event's data, not the id
      assert.equal((await joinedSeen).peer.name, "Bo");
      assert.deepEqual([...guest.members.keys()], [host.peerId, guest.peerId]);
      await eventually(() => host.viewerCount === 2);

      // chat: the promise is the sender's own copy, matched by its request id
      const heard = host.once("chat");
      const mine = await guest.chat("hello");
      assert.deepEqual([mine.type, mine.text, mine.from, mine.name], ["chat", "hello", guest.peerId, "Bo"]);
      assert.equal(typeof mine.requestId, "number"); // the request's id: the line's is `id`
      assert.equal(typeof mine.id, "string");
      const theirs = await heard;
      const { requestId: _, ...sameChat } = mine;
      assert.deepEqual(theirs, sameChat); // the others' copy: the same line, without requestId
      // ids on the wire: the joined and chat replies carried them
      assert.ok(frames.some((event) => event.type === "joined" && typeof event.id === "number"));

      // refusals reject the request's promise, matched by id
      await rejects(guest.kick(host.peerId), "forbidden");
      await rejects(guest.chat("   "), "invalid_text");
      await rejects(b.join("nosuchroom"), "room_not_found");

      // relays: to one peer, with the server-set from
      const offer = host.once("offer");
      guest.send(host.peerId, "offer", { type: "offer", sdp: "v=0" });
      const relayed = await offer;
      assert.deepEqual(relayed.payload, { type: "offer", sdp: "v=0" });
      assert.equal(relayed.from, guest.peerId);
      assert.equal(relayed.to, host.peerId);

      const left = host.once("peer-left");
      await guest.leave();
      assert.equal((await left).peerId, guest.peerId);
      assert.equal(b.rooms.size, 0);
      assert.ok(!host.members.has(guest.peerId));
    } finally {
      a.close();
      b.close();
    }
  });

  test("host closes the room; kick removes a member", async () => {
    const room = await lh.createRoom({ title: "close" });
    const a = lh.connect();
    const b = lh.connect();
    try {
      const host = await a.join(room.id, { role: "host", token: room.ownerToken });
      const guest = await b.join(room.id, { name: "Bo" });
      const kicked = guest.once("kicked");
      await host.kick(guest.peerId);
      assert.equal((await kicked).by, host.peerId);
      assert.equal(b.rooms.size, 0);
      const status = await host.close();
      assert.equal(status.room.status, "ended");
      await rejects(b.join(room.id), "room_ended");
    } finally {
      a.close();
      b.close();
    }
  });

  test("the stage: invite, decline, accept, credentials kept for rejoins, remove, leave", async () => {
    const room = await lh.createRoom({ title: "stage" });
    const a = lh.connect();
    const b = lh.connect();
    try {
      const host = await a.join(room.id, { name: "Ana", role: "host", token: room.ownerToken });
      const guest = await b.join(room.id, { name: "Bo" });

      // a refusal of an unanswered message: an `error` event carrying the request's id
      const refused = guest.once("error");
      const id = await guest.inviteToStage(host.peerId);
      const error = await refused;
      assert.deepEqual([error.code, error.inReplyTo, error.id], ["forbidden", "stage-invite", id]);
      await rejects(guest.acceptStage(), "not_invited");

      let invite = guest.once("stage-invite");
      await host.inviteToStage(guest.peerId);
      assert.deepEqual([(await invite).from, (await invite).name], [host.peerId, "Ana"]);
      const declined = host.once("stage-declined");
      await guest.declineStage();
      assert.equal((await declined).peerId, guest.peerId);

      invite = guest.once("stage-invite");
      await host.inviteToStage(guest.peerId);
      await invite;
      const staged = host.once("stage", { filter: (event) => event.stage.length === 1 });
      const credentials = await guest.acceptStage();
      assert.equal(credentials.type, "stage-credentials");
      assert.ok(credentials.publish.whipUrl && credentials.streamKey.endsWith(guest.peerId));
      assert.equal(guest.stageToken, credentials.publish.token); // sent again on a rejoin
      assert.equal((await staged).stage[0].peerId, guest.peerId);

      const removed = guest.once("stage-removed");
      await host.removeFromStage(guest.peerId);
      assert.equal((await removed).by, host.peerId);
      assert.equal(guest.stageToken, null);

      invite = guest.once("stage-invite");
      await host.inviteToStage(guest.peerId);
      await invite;
      await guest.acceptStage();
      const emptied = host.once("stage", { filter: (event) => event.stage.length === 0 });
      const left = await guest.leaveStage();
      assert.deepEqual([left.type, left.peerId], ["stage-removed", guest.peerId]);
      await emptied;
      assert.equal(guest.stageToken, null);
      await rejects(guest.leaveStage(), "not_on_stage");
    } finally {
      a.close();
      b.close();
    }
  });

  test("the handle's room follows the stage (`stage` events)", async () => {
    const room = await lh.createRoom({ title: "stage state" });
    const a = lh.connect();
    const b = lh.connect();
    try {
      const host = await a.join(room.id, { name: "Ana", role: "host", token: room.ownerToken });
      const guest = await b.join(room.id, { name: "Bo" });
      assert.deepEqual([host.room.stage, guest.room.stage], [[], []]);
      const invited = guest.once("stage-invite");
      await host.inviteToStage(guest.peerId);
      await invited;
      const staged = host.once("stage", { filter: (event) => event.stage.length === 1 });
      await guest.acceptStage();
      await staged;
      assert.deepEqual(host.room.stage.map((g) => g.peerId), [guest.peerId]);
      assert.equal(host.room.id, room.id); // the rest of the room as it was
      await eventually(() => guest.room.stage.length === 1);
      const emptied = host.once("stage", { filter: (event) => event.stage.length === 0 });
      await guest.leaveStage();
      await emptied;
      assert.deepEqual(host.room.stage, []);
    } finally {
      a.close();
      b.close();
    }
  });

  test("moderation: slow mode, delete a line, mute and unmute; viewers may not", async () => {
    const room = await lh.createRoom({ title: "moderation" });
    const a = lh.connect();
    const b = lh.connect();
    try {
      const host = await a.join(room.id, { role: "host", token: room.ownerToken });
      const guest = await b.join(room.id, { name: "Bo" });
      assert.equal(guest.data.slowMode, 0); // joined says the room's slow mode (typed: JoinedEvent)

      const settings = await host.setSlowMode(30);
      assert.deepEqual([settings.type, settings.slowMode], ["room-settings", 30]);
      assert.equal((await b.join(room.id, { name: "Bo" })).data.slowMode, 30);
      const line = await guest.chat("first");
      await rejects(guest.chat("second"), "slow_mode");
      await host.chat("hosts are not slowed");
      await host.chat("at all");
      assert.equal((await host.setSlowMode(0)).slowMode, 0);

      const gone = guest.once("chat-deleted");
      const deleted = await host.deleteChat(line.id);
      assert.deepEqual([deleted.type, deleted.id], ["chat-deleted", line.id]);
      assert.equal((await gone).id, line.id);
      await rejects(guest.deleteChat(line.id), "forbidden");

      const muted = guest.once("muted");
      await host.mute(guest.peerId, 60);
      const notice = await muted;
      assert.equal(notice.by, host.peerId);
      assert.ok(notice.until > Date.now());
      await rejects(guest.chat("am I muted"), "muted");
      const unmuted = guest.once("unmuted");
      await host.unmute(guest.peerId);
      await unmuted;
      assert.equal((await guest.chat("back")).text, "back");

      const refused = guest.once("error");
      const id = await guest.mute(host.peerId);
      assert.deepEqual([(await refused).code, (await refused).id], ["forbidden", id]);
    } finally {
      a.close();
      b.close();
    }
  });

  test("reconnects with backoff after the server restarts, and rejoins its rooms", async () => {
    const room = await lh.createRoom({ title: "restart" });
    const options = { minDelay: 100, maxDelay: 800 };
    const a = lh.connect(options);
    const b = lh.connect(options);
    try {
      const host = await a.join(room.id, { name: "Ana", role: "host", token: room.ownerToken });
      const guest = await b.join(room.id, { name: "Bo" });
      const before = [host.peerId, guest.peerId];
      // the guest is on stage: its rejoin carries its stage token and takes its place again
      const invited = guest.once("stage-invite");
      await host.inviteToStage(guest.peerId);
      await invited;
      const { publish } = await guest.acceptStage();
      let stage = [];
      host.on("stage", (event) => { stage = event.stage; });
      const attempts = [];
      a.on("reconnecting", (event) => attempts.push(event));
      const rejoined = [host.once("rejoined"), guest.once("rejoined")];
      const reconnected = [a.once("reconnected"), b.once("reconnected")];

      await server.stop();
      // while it is down every attempt fails (Node's WebSocket: an `error` event alone) and
      // the client keeps trying, each delay within its backoff ceiling
      await eventually(() => attempts.length >= 3, 10_000);
      for (const { attempt, delay } of attempts) {
        const ceiling = Math.min(800, 100 * 2 ** (attempt - 1));
        assert.ok(delay >= ceiling / 2 && delay <= ceiling, `${attempt}: ${delay}`);
      }
      await server.start();

      const [hostAgain, guestAgain] = await Promise.all(rejoined);
      await Promise.all(reconnected);
      assert.equal(hostAgain.role, "host");
      assert.equal(guestAgain.room.id, room.id);
      assert.notDeepEqual([host.peerId, guest.peerId], before); // new connections
      await eventually(() => host.members.has(guest.peerId) || guest.members.has(host.peerId));
      assert.equal(guest.stageToken, publish.token);
      const onStage = () => [...stage, ...(host.room.stage ?? [])].map((g) => g.peerId);
      await eventually(() => onStage().includes(guest.peerId), 10_000); // same stream key, new peer

      const heard = host.once("chat");
      const mine = await guest.chat("back again");
      assert.equal((await heard).text, "back again");
      assert.equal(mine.from, guest.peerId);
    } finally {
      a.close();
      b.close();
    }
  });
});

describe("counted presence (a livehub with LIVEHUB_PRESENCE_LIMIT=3)", () => {
  const small = new Server({ LIVEHUB_PRESENCE_LIMIT: "3" });
  let lh3;
  before(async () => {
    await small.start();
    lh3 = new sdk.Livehub({ baseUrl: small.url, WebSocket: globalThis.WebSocket });
  });
  after(() => small.close());

  test("members: every member while full; the hosts and self while counted", async () => {
    const room = await lh3.createRoom({ title: "counted" });
    const clients = Array.from({ length: 5 }, () => lh3.connect());
    const names = (handle) => [...handle.members.values()].map((m) => m.name).sort();
    try {
      const [a, b, c, d, e] = clients;
      const host = await a.join(room.id, { name: "H", role: "host", token: room.ownerToken });
      const v1 = await b.join(room.id, { name: "V1" });
      await c.join(room.id, { name: "V2" });
      await eventually(() => host.members.size === 3);
      const v3 = await d.join(room.id, { name: "V3" }); // the fourth member: counted
      assert.equal(v3.presence, "counted");
      assert.deepEqual(names(v3), ["H", "V3"]);
      await eventually(() => host.presence === "counted" && v1.presence === "counted");
      assert.deepEqual(names(host), ["H"]); // viewers' departures are not announced now
      assert.deepEqual(names(v1), ["H", "V1"]);

      // hosts are announced in any room; a host that joins again as viewer leaves the lists
      const cohost = await e.join(room.id, { name: "H2", role: "host", token: room.ownerToken });
      await eventually(() => host.members.has(cohost.peerId) && v1.members.has(cohost.peerId));
      assert.deepEqual(names(host), ["H", "H2"]);
      await e.join(room.id, { name: "H2" });
      await eventually(() => !host.members.has(cohost.peerId) && !v1.members.has(cohost.peerId));
      assert.deepEqual(names(host), ["H"]);

      // back to full (3 members): the whole list again
      await c.rooms.get(room.id).leave();
      await d.rooms.get(room.id).leave();
      await eventually(() => host.presence === "full");
      assert.deepEqual(names(host), ["H", "H2", "V1"]);
      assert.deepEqual(names(v1), ["H", "H2", "V1"]);
    } finally {
      for (const client of clients) client.close();
    }
  });
});

/** A WebSocket the test plays the server of: it opens, answers and closes when told. */
class ScriptedSocket {
  static made = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    ScriptedSocket.made.push(this);
  }
  send(frame) {
    this.sent.push(JSON.parse(frame));
  }
  close(code = 1000) {
    this.drop(code);
  }
  accept() {
    this.readyState = 1;
    this.onopen?.({});
  }
  push(event) {
    this.onmessage?.({ data: JSON.stringify(event) });
  }
  /** Answer the last `join` sent on this socket with `joined` (or with an `error` event). */
  answerJoin(roomId, { peerId = "p1", error } = {}) {
    const join = this.sent.findLast((message) => message.type === "join" && message.roomId === roomId);
    assert.ok(join, `no join of ${roomId} sent`);
    if (error) {
      this.push({ type: "error", code: error, message: error, inReplyTo: "join", roomId, id: join.id });
      return;
    }
    this.push({
      type: "joined", roomId, peerId, role: "viewer", room: { id: roomId, stage: [] },
      members: [{ peerId, name: "Bo", role: "viewer" }], presence: "full", viewerCount: 1, id: join.id,
    });
  }
  drop(code = 1006, reason = "") {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
}

const pause = (ms = 0) => new Promise((ok) => setTimeout(ok, ms));

/** A client on a ScriptedSocket that joined `roomIds`; its socket is the last one made. */
async function scripted(roomIds, options = {}) {
  ScriptedSocket.made = [];
  const client = new sdk.SignalingClient("ws://x.invalid/ws", {
    WebSocket: ScriptedSocket, minDelay: 10, maxDelay: 40, random: () => 1, ...options,
  });
  const ws = ScriptedSocket.made[0];
  ws.accept();
  const handles = [];
  for (const roomId of roomIds) {
    const joining = client.join(roomId, { name: "Bo" });
    ws.answerJoin(roomId);
    handles.push(await joining);
  }
  return { client, handles, socket: () => ScriptedSocket.made.at(-1) };
}

describe("without a server", () => {
  test("a client without a WebSocket constructor says so", () => {
    assert.throws(
      () => new sdk.SignalingClient("ws://x.invalid/ws", { WebSocket: undefined }),
      (err) => err instanceof sdk.LivehubError && err.code === "no_websocket",
    );
  });

  test("backoff doubles up to maxDelay with jitter, also when only `error` fires", async () => {
    const made = [];
    class FailingSocket {
      constructor(url) {
        this.url = url;
        this.readyState = 0;
        made.push(this);
        setTimeout(() => this.onerror?.({}), 0); // no close event, as Node's WebSocket
      }
      send() {}
      close() {}
    }
    const delays = [];
    const client = new sdk.SignalingClient("ws://x.invalid/ws", {
      WebSocket: FailingSocket,
      minDelay: 8,
      maxDelay: 32,
      random: () => 1,
    });
    client.on("reconnecting", ({ delay }) => delays.push(delay));
    const pending = client.request({ type: "join", roomId: "r" }, { timeout: 5000 });
    await eventually(() => delays.length >= 5);
    client.close();
    assert.deepEqual(delays.slice(0, 5), [8, 16, 32, 32, 32]);
    assert.ok(made.length >= 5);
    // a request never sent stays queued across failed attempts, and fails when closed
    await rejects(pending, "closed");
  });

  test("a rejoin cut off by another drop keeps the room: the next connection joins it again", async () => {
    const { client, handles: [handle], socket } = await scripted(["r1"]);
    const events = [];
    handle.on("lost", ({ error }) => events.push(`lost ${error.code}`));
    handle.on("rejoined", () => events.push("rejoined"));
    client.on("reconnected", ({ rooms }) => events.push(`reconnected ${rooms}`));
    try {
      socket().drop(1001, "server shutdown");
      await eventually(() => ScriptedSocket.made.length === 2);
      socket().accept();
      assert.equal(socket().sent[0].type, "join"); // the rejoin goes out...
      socket().drop(); // ... and the connection drops again before its answer
      await pause(5);
      assert.deepEqual(events, []); // not lost, and not reconnected either
      assert.equal(client.rooms.get("r1"), handle);
      await eventually(() => ScriptedSocket.made.length === 3);
      socket().accept();
      socket().answerJoin("r1", { peerId: "p3" });
      await eventually(() => events.length === 2);
      assert.deepEqual(events, ["rejoined", "reconnected r1"]);
      assert.equal(handle.peerId, "p3");
      assert.equal(handle.left, false);
    } finally {
      client.close();
    }
  });

  test("a rejoin the server refuses loses the room; one it did not answer is sent again", async () => {
    const { client, handles, socket } = await scripted(["r1", "r2", "r3"], { timeout: 300 });
    const events = [];
    for (const handle of handles) {
      handle.on("lost", ({ error }) => events.push(`${handle.roomId} lost ${error.code}`));
      handle.on("rejoined", () => events.push(`${handle.roomId} rejoined`));
    }
    try {
      socket().drop();
      await eventually(() => ScriptedSocket.made.length === 2);
      const ws = socket();
      ws.accept();
      assert.deepEqual(ws.sent.map((m) => [m.type, m.roomId]), [["join", "r1"], ["join", "r2"], ["join", "r3"]]);
      const joins = (roomId) => ws.sent.filter((m) => m.type === "join" && m.roomId === roomId).length;
      const reconnected = client.once("reconnected");
      ws.answerJoin("r1", { error: "room_ended" }); // refused: the room is gone for good
      ws.answerJoin("r2", { error: "rate_limited" }); // not now: sent again after a backoff
      await eventually(() => joins("r2") === 2);
      assert.deepEqual(events, ["r1 lost room_ended"]);
      assert.deepEqual([...client.rooms.keys()], ["r2", "r3"]);
      ws.answerJoin("r2");
      await eventually(() => joins("r3") === 2); // r3's got no answer at all: sent again
      ws.answerJoin("r3");
      assert.deepEqual((await reconnected).rooms, ["r2", "r3"]);
      assert.equal(joins("r1"), 1);
      assert.deepEqual(events, ["r1 lost room_ended", "r2 rejoined", "r3 rejoined"]);
      assert.deepEqual(handles.map((h) => h.left), [true, false, false]);
    } finally {
      client.close();
    }
  });

  test("backoff: connections the server accepts then drops are retried later and later", async () => {
    const { client, socket } = await scripted([], { minDelay: 8, maxDelay: 200 });
    const delays = [];
    client.on("reconnecting", ({ delay }) => delays.push(delay));
    try {
      for (let n = 0; n < 5; n++) {
        const made = ScriptedSocket.made.length;
        socket().drop(n < 4 ? 1011 : 1008, "internal error");
        if (n < 4) {
          await eventually(() => ScriptedSocket.made.length === made + 1);
          socket().accept(); // accepted, and dropped at once the next round
        }
      }
      // doubling as if no connection had opened; a flood close (1008) waits maxDelay
      assert.deepEqual(delays, [8, 16, 32, 64, 200]);
    } finally {
      client.close();
    }
  });

  test("backoff starts again once a connection stays up (maxDelay) or its rooms are joined again", async () => {
    const { client, socket } = await scripted(["r1"], { minDelay: 8, maxDelay: 60 });
    const delays = [];
    client.on("reconnecting", ({ delay }) => delays.push(delay));
    try {
      socket().drop();
      await eventually(() => ScriptedSocket.made.length === 2);
      socket().accept();
      socket().drop(); // its rejoin unanswered: the backoff goes on
      await eventually(() => ScriptedSocket.made.length === 3);
      socket().accept();
      socket().answerJoin("r1"); // joined again: this connection works
      await pause(1);
      socket().drop();
      await eventually(() => ScriptedSocket.made.length === 4);
      socket().accept();
      await pause(80); // up for longer than maxDelay
      socket().drop();
      await eventually(() => ScriptedSocket.made.length === 5);
      assert.deepEqual(delays, [8, 16, 8, 8]);
    } finally {
      client.close();
    }
  });

  test("hostile server messages neither throw in the socket's handler nor break the client", async () => {
    const { client, handles: [handle], socket } = await scripted(["r1"]);
    const ws = socket();
    try {
      const frames = [
        "null", "42", '"text"', "[]", "{}", "not json", '{"type":{"x":1}}', '{"type":"__proto__"}',
        '{"type":"toString","roomId":"toString"}',
        '{"type":"peer-joined","roomId":"r1"}',
        '{"type":"peer-joined","roomId":"r1","peer":null}',
        '{"type":"peer-joined","roomId":"r1","peer":"p9"}',
        '{"type":"presence-mode","roomId":"r1","presence":"full","members":"everyone"}',
        '{"type":"presence-mode","roomId":"r1","presence":"full","members":[null,7]}',
        '{"type":"joined","roomId":"r1","members":{"length":1}}',
        '{"type":"joined","roomId":"r1","members":[null]}',
        '{"type":"stage-credentials","roomId":"r1","publish":null}',
        '{"type":"room-status","roomId":"r1","room":null}',
        '{"type":"stage","roomId":"r1","stage":null}',
        '{"type":"error","roomId":"r1","code":{"no":1},"message":["x"]}',
      ];
      for (const data of frames) assert.doesNotThrow(() => ws.onmessage({ data }), data);
      // still in working order: a line in the room arrives, a request is answered
      const line = handle.once("chat");
      ws.push({ type: "chat", roomId: "r1", id: "c1", from: "p2", name: "Al", text: "hi" });
      assert.equal((await line).text, "hi");
      assert.equal(client.rooms.get("r1"), handle);
      // a reply without the members a `joined` has: the join still settles, with none
      const joining = client.join("r2", { name: "Bo" });
      const sent = ws.sent.findLast((m) => m.type === "join" && m.roomId === "r2");
      ws.push({ type: "joined", roomId: "r2", peerId: "p1", id: sent.id });
      const second = await joining;
      assert.equal(second.members.size, 0);
    } finally {
      client.close();
    }
  });

  test("the server cannot pass its messages off as the client's own events", async () => {
    const { client, handles: [handle], socket } = await scripted(["r1"]);
    const local = [];
    for (const type of ["open", "close", "reconnecting", "reconnected"]) {
      client.on(type, () => local.push(`client ${type}`));
    }
    for (const type of ["rejoined", "lost"]) handle.on(type, () => local.push(`handle ${type}`));
    const messages = [];
    client.on("message", (event) => messages.push(event.type));
    try {
      for (const type of ["open", "close", "reconnecting", "reconnected", "message", "rejoined", "lost"]) {
        socket().push({ type, roomId: "r1", code: 1000, attempt: 1, delay: 1, rooms: [], error: {} });
      }
      assert.deepEqual(local, []);
      // each is still a server message, seen once by `message` listeners
      assert.deepEqual(messages, ["open", "close", "reconnecting", "reconnected", "message", "rejoined", "lost"]);
      assert.equal(handle.left, false);
      assert.ok(client.connected);
    } finally {
      client.close();
    }
  });

  test("backoff: a client closed 1013 (too slow for its room) is not brought back faster by its rejoin", async () => {
    const { client, socket } = await scripted(["r1"], { minDelay: 8, maxDelay: 200 });
    const delays = [];
    client.on("reconnecting", ({ delay }) => delays.push(delay));
    try {
      for (let n = 0; n < 4; n++) {
        const made = ScriptedSocket.made.length;
        socket().drop(n % 2 ? 1008 : 1013, "outbound queue full");
        await eventually(() => ScriptedSocket.made.length === made + 1);
        const back = client.once("reconnected");
        socket().accept();
        socket().answerJoin("r1"); // the rejoin works, and the room floods it again
        await back;
      }
      // not [8, 200, 8, 200]: each rejoin used to start the backoff again, so a client too
      // slow for its room came back at once, each time a leave and a join every member hears
      assert.deepEqual(delays, [8, 200, 32, 200]);
    } finally {
      client.close();
    }
  });

  test("leave() of a handle that is done (kicked, lost) leaves nothing: not the room joined again since", async () => {
    const { client, handles: [kicked], socket } = await scripted(["r1"]);
    const ws = socket();
    try {
      ws.push({ type: "kicked", roomId: "r1", by: "h1" });
      assert.equal(kicked.left, true);
      const joining = client.join("r1", { name: "Bo" }); // back in (a kick is not a ban)
      ws.answerJoin("r1", { peerId: "p2" });
      const again = await joining;
      assert.notEqual(again, kicked);
      const sent = ws.sent.length;
      const leaving = kicked.leave(); // the old handle, say a page's cleanup
      leaving.catch(() => {});
      assert.equal(client.rooms.get("r1"), again); // the room joined since is still this client's
      assert.deepEqual(ws.sent.slice(sent).map((m) => m.type), []); // and no `leave` took it out
      await leaving;
      assert.equal(again.left, false);
    } finally {
      client.close();
    }
  });

  test("joining again (a new name) keeps the stage token: the rejoin still takes the place", async () => {
    const { client, handles: [handle], socket } = await scripted(["r1"]);
    try {
      socket().push({ type: "stage-credentials", roomId: "r1", streamKey: "k", publish: { token: "st-1" } });
      assert.equal(handle.stageToken, "st-1");
      const renamed = client.join("r1", { name: "Bo again" });
      socket().answerJoin("r1");
      assert.equal(await renamed, handle);
      assert.equal(handle.options.name, "Bo again");
      assert.equal(handle.stageToken, "st-1");
      socket().drop();
      await eventually(() => ScriptedSocket.made.length === 2);
      socket().accept();
      const { id: _, ...rejoin } = socket().sent[0];
      assert.deepEqual(rejoin, { type: "join", roomId: "r1", name: "Bo again", stageToken: "st-1" });
      // a join that gives a stage token replaces the one kept
      const given = client.join("r1", { name: "Bo", stageToken: "st-2" });
      socket().answerJoin("r1", { peerId: "p2" });
      await given;
      assert.equal(handle.stageToken, "st-2");
    } finally {
      client.close();
    }
  });
});

describe("while disconnected (without a server)", () => {
  test("the send queue is bounded: past maxQueue a request rejects queue_full, sendRaw gets an error event", async () => {
    const { client, handles: [handle], socket } = await scripted(["r1"], { maxQueue: 3 });
    const errors = [];
    client.on("error", (event) => errors.push(["client", event.code, event.inReplyTo, event.roomId]));
    handle.on("error", (event) => errors.push(["handle", event.code, event.inReplyTo, event.roomId]));
    try {
      socket().drop();
      const chats = [handle.chat("one"), handle.chat("two")];
      for (const chat of chats) chat.catch(() => {}); // never answered: closed at the end
      const id = await handle.mute("p2", 60); // the third: queued, resolves with its id
      assert.equal(typeof id, "number");
      // full: refused at once, visibly, and not queued
      await rejects(handle.chat("four"), "queue_full");
      await rejects(handle.unmute("p2"), "queue_full");
      handle.send("p2", "candidate", { candidate: "c" });
      assert.deepEqual(errors, [
        ["client", "queue_full", "candidate", "r1"],
        ["handle", "queue_full", "candidate", "r1"],
      ]);
      // on the next connection the rejoin goes first, then exactly what was queued, in order
      await eventually(() => ScriptedSocket.made.length === 2);
      const ws = socket();
      ws.accept();
      assert.deepEqual(ws.sent.map((m) => m.type), ["join", "chat", "chat", "mute"]);
      assert.deepEqual(ws.sent.slice(1, 3).map((m) => m.text), ["one", "two"]);
      // sent: room in the queue again
      await client.notify({ type: "unmute", roomId: "r1", peerId: "p2" });
      assert.equal(ws.sent.at(-1).type, "unmute");
    } finally {
      client.close();
    }
  });

  test("opened() waiting when close() is called rejects with closed", { timeout: 5000 }, async () => {
    const { client, socket } = await scripted([]);
    socket().drop();
    const waiting = client.opened();
    client.close();
    await rejects(waiting, "closed");
    await rejects(client.opened(), "closed"); // as one asked for after close()
  });

  test("reconnect: false: opened() rejects once the socket is gone for good, never hangs", { timeout: 5000 }, async () => {
    // a real WebSocket to a port where nothing listens: the one attempt fails
    const refused = new sdk.SignalingClient("ws://127.0.0.1:9/ws", {
      WebSocket: globalThis.WebSocket,
      reconnect: false,
    });
    try {
      const waiting = refused.opened();
      await refused.once("close");
      await rejects(waiting, "disconnected");
      await rejects(refused.opened(), "disconnected"); // asked for after the drop
    } finally {
      refused.close();
    }
    // a connection that was open, then dropped
    const { client, socket } = await scripted([], { reconnect: false });
    try {
      await client.opened();
      socket().drop(1001, "server shutdown");
      await rejects(client.opened(), "disconnected");
    } finally {
      client.close();
    }
  });

  test("the send queue's default bounds: 100 messages, 1 MiB", async () => {
    const { client, socket } = await scripted([]);
    try {
      socket().drop();
      for (let n = 0; n < 100; n++) client.sendRaw({ type: "candidate", roomId: "r1", payload: n });
      await rejects(client.notify({ type: "mute", roomId: "r1", peerId: "p" }), "queue_full");
      client.close();
      // bytes: a few big messages fill it before the count does
      const { client: big, socket: bigSocket } = await scripted([]);
      try {
        bigSocket().drop();
        const payload = "x".repeat(300 * 1024);
        for (let n = 0; n < 3; n++) await big.notify({ type: "offer", roomId: "r1", payload });
        await assert.rejects(big.notify({ type: "offer", roomId: "r1", payload }), (err) => {
          assert.equal(err.code, "queue_full");
          assert.deepEqual(err.details, { maxQueue: 100, maxQueueBytes: 1024 * 1024 });
          return true;
        });
        await big.notify({ type: "offer", roomId: "r1", payload: "small" }); // still room for it
      } finally {
        big.close();
      }
    } finally {
      client.close();
    }
  });

  /** A ScriptedSocket whose constructor throws `errors.shift()` while any are left. */
  function throwingSocket(errors) {
    return class extends ScriptedSocket {
      constructor(url) {
        const error = errors.shift();
        if (error) throw error;
        super(url);
      }
    };
  }

  test("a WebSocket constructor that throws (SecurityError) is a failed attempt: the backoff goes on", async () => {
    const refusals = [new DOMException("refused", "SecurityError"), new Error("out of sockets")];
    const errors = [];
    const { client, handles: [handle], socket } = await scripted(["r1"], {
      WebSocket: throwingSocket(errors),
    });
    const seen = [];
    client.on("close", ({ code, error }) => seen.push(`close ${code} ${error?.code ?? "-"}`));
    client.on("reconnecting", ({ attempt, delay }) => seen.push(`reconnecting ${attempt} ${delay}`));
    const rejoined = handle.once("rejoined");
    try {
      errors.push(...refusals);
      socket().drop();
      await eventually(() => ScriptedSocket.made.length === 2);
      assert.deepEqual(seen, [
        "close 1006 -",
        "reconnecting 1 10",
        "close 1006 websocket_error",
        "reconnecting 2 20",
        "close 1006 websocket_error",
        "reconnecting 3 40",
      ]);
      socket().accept();
      socket().answerJoin("r1", { peerId: "p2" });
      await rejoined;
      assert.equal(handle.peerId, "p2");
    } finally {
      client.close();
    }
  });

  test("an invalid URL stops for good: the rooms are lost, requests reject, opened() too", async () => {
    const errors = [];
    const { client, handles: [handle], socket } = await scripted(["r1"], {
      WebSocket: throwingSocket(errors),
    });
    const lost = handle.once("lost");
    const closes = [];
    client.on("close", (event) => closes.push(event));
    const attempts = [];
    client.on("reconnecting", (event) => attempts.push(event));
    try {
      errors.push(new DOMException("The URL is invalid", "SyntaxError"));
      socket().drop();
      const pending = client.request({ type: "chat", roomId: "r1", text: "queued" });
      const opened = client.opened();
      const { error } = await lost;
      assert.deepEqual([error.code, error.details], ["invalid_url", { name: "SyntaxError" }]);
      await rejects(pending, "invalid_url");
      await rejects(opened, "invalid_url");
      await rejects(client.opened(), "invalid_url");
      assert.equal(handle.left, true);
      assert.equal(client.rooms.size, 0);
      assert.equal(closes.at(-1).error.code, "invalid_url");
      await pause(30);
      assert.equal(attempts.length, 1); // the drop's; none after the invalid URL
      assert.equal(ScriptedSocket.made.length, 1);
    } finally {
      client.close();
    }
  });

  test("the first attempt: an invalid URL throws at once, a refusal is retried", async () => {
    assert.throws(
      () => new sdk.SignalingClient("not a url", { WebSocket: throwingSocket([new DOMException("bad", "SyntaxError")]) }),
      (err) => err instanceof sdk.LivehubError && err.code === "invalid_url",
    );
    ScriptedSocket.made = [];
    const client = new sdk.SignalingClient("ws://x.invalid/ws", {
      WebSocket: throwingSocket([new DOMException("refused", "SecurityError")]),
      minDelay: 10, maxDelay: 40, random: () => 1,
    });
    // listeners added after the constructor still hear the first failure
    const closed = client.once("close");
    const reconnecting = client.once("reconnecting");
    try {
      assert.equal((await closed).error.code, "websocket_error");
      assert.deepEqual(await reconnecting, { attempt: 1, delay: 10 });
      await eventually(() => ScriptedSocket.made.length === 1);
      ScriptedSocket.made[0].accept();
      await client.opened();
    } finally {
      client.close();
    }
  });
});

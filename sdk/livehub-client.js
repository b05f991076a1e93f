// livehub-client: the JavaScript SDK of livehub (REST API, WebSocket signaling, WHEP playback).
//
// One ES module, no dependencies, no DOM: it runs in browsers and in Node (give it a WebSocket
// constructor where there is no global one). Types: livehub-client.d.ts. Guide: docs/frontend.md.
// livehub serves this very file at /sdk/livehub-client.js.
//
//   import { Livehub } from "/sdk/livehub-client.js";
//   const lh = new Livehub({ baseUrl: "https://live.example.com" });
//   const room = await lh.createRoom({ title: "Friday stream" });
//   const client = lh.connect();
//   const handle = await client.join(room.id, { name: "Ana", role: "host", token: room.ownerToken });
//   handle.on("chat", (msg) => console.log(msg.name, msg.text));
//   await handle.chat("hello");

export const VERSION = "0.1.0";

/** Every failure the SDK reports: REST errors (the server's `{error, code, details}` with the
 * HTTP status and `Retry-After`), WebSocket `error` events answering a request, and the SDK's
 * own (`network_error`, `timeout`, `disconnected`, `closed`, `no_websocket`, `queue_full`,
 * `websocket_error`, `invalid_url`). */
export class LivehubError extends Error {
  constructor(message, { code = "error", status = 0, details = null, retryAfter = null } = {}) {
    super(message);
    this.name = "LivehubError";
    this.code = code;
    this.status = status;
    this.details = details;
    this.retryAfter = retryAfter;
  }
}

/** A tiny typed event emitter (no DOM EventTarget: Node and browsers alike). */
class Emitter {
  #handlers = new Map();

  /** Call `handler` for every `type` event; returns a function that removes it. */
  on(type, handler) {
    let set = this.#handlers.get(type);
    if (!set) this.#handlers.set(type, (set = new Set()));
    set.add(handler);
    return () => this.off(type, handler);
  }

  off(type, handler) {
    this.#handlers.get(type)?.delete(handler);
  }

  /** The next `type` event (a Promise); rejects after `timeout` ms when given. */
  once(type, { timeout, filter } = {}) {
    return new Promise((resolve, reject) => {
      let timer = null;
      const off = this.on(type, (event) => {
        if (filter && !filter(event)) return;
        off();
        if (timer) clearTimeout(timer);
        resolve(event);
      });
      if (timeout) {
        timer = setTimeout(() => {
          off();
          reject(new LivehubError(`No ${type} event within ${timeout} ms`, { code: "timeout" }));
        }, timeout);
      }
    });
  }

  emit(type, event) {
    for (const handler of [...(this.#handlers.get(type) ?? [])]) {
      try {
        handler(event);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  }
}

/** Whether `url` is on the origin of `base` (a URL that does not parse is on none). */
function sameOrigin(url, base) {
  try {
    return new URL(url).origin === new URL(base).origin;
  } catch {
    return false;
  }
}

/** `url` resolved against `base` when it is an http(s) URL, else null: a server's `javascript:`
 * or `data:` URL never reaches a frontend's `href`. */
function httpUrl(url, base) {
  if (typeof url !== "string") return null;
  try {
    const resolved = new URL(url, base);
    return resolved.protocol === "http:" || resolved.protocol === "https:" ? resolved.href : null;
  } catch {
    return null;
  }
}

/** A plain object (what every server message and member is), not null, an array or a scalar. */
function isObject(value) {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `list`'s members (objects with a peer id) by peer id; anything else is left out. */
function memberMap(list) {
  const members = new Map();
  if (!Array.isArray(list)) return members;
  for (const member of list) if (isObject(member)) members.set(member.peerId, member);
  return members;
}

function trimSlash(url) {
  return url.replace(/\/+$/, "");
}

function defaultBaseUrl() {
  const origin = globalThis.location?.origin;
  if (!origin || origin === "null") {
    throw new LivehubError("Give baseUrl: there is no page location to default to", {
      code: "no_base_url",
    });
  }
  return origin;
}

/** The URL of `Link: <url>; rel="next"`, or null. */
export function nextLink(header) {
  if (!header) return null;
  for (const part of header.split(",")) {
    const match = /<([^>]*)>\s*;\s*rel="?next"?/.exec(part);
    if (match) return match[1];
  }
  return null;
}

function totalOf(header) {
  const total = header === null || header === "" ? NaN : Number(header);
  return Number.isInteger(total) ? total : null;
}

function retryAfterOf(response, details) {
  const header = response.headers.get("Retry-After");
  if (header !== null && header !== "" && !Number.isNaN(Number(header))) return Number(header);
  if (details && typeof details.retryAfter === "number") return details.retryAfter;
  return null;
}

/**
 * The REST API of one livehub, and the door to its signaling (`connect`).
 *
 * options: `baseUrl` (default: the page's origin), `token` (a bearer token sent with every
 * request that takes one: an API key or the admin token; each call may give its own),
 * `fetch` and `WebSocket` (defaults: the globals), `wsUrl` (default: baseUrl's `/ws`).
 */
export class Livehub {
  constructor(options = {}) {
    this.baseUrl = trimSlash(options.baseUrl ?? defaultBaseUrl());
    this.token = options.token ?? null;
    this.wsUrl = options.wsUrl ?? `${this.baseUrl.replace(/^http/, "ws")}/ws`;
    this._fetch = options.fetch ?? globalThis.fetch?.bind(globalThis);
    this._WebSocket = options.WebSocket ?? globalThis.WebSocket;
  }

  /** A request to the API; the parsed JSON (or null for 204). Errors: LivehubError. */
  async request(method, path, { body, token, query, raw = false } = {}) {
    if (!this._fetch) {
      throw new LivehubError("No fetch: pass options.fetch", { code: "no_fetch" });
    }
    let url = path.startsWith("http") ? path : `${this.baseUrl}${path}`;
    if (query) {
      const params = new URLSearchParams();
      for (const [key, value] of Object.entries(query)) {
        if (value !== undefined && value !== null) params.set(key, String(value));
      }
      const text = params.toString();
      if (text) url += (url.includes("?") ? "&" : "?") + text;
    }
    const headers = {};
    const bearer = token ?? this.token;
    // the token goes to this livehub only: a URL the server handed out (a `Link` next page)
    // naming another origin gets the request without it
    if (bearer && sameOrigin(url, this.baseUrl)) headers.Authorization = `Bearer ${bearer}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await this._fetch(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      throw new LivehubError(`Cannot reach livehub: ${err?.message ?? err}`, {
        code: "network_error",
      });
    }
    if (!response.ok) {
      let data = null;
      try {
        data = await response.json();
      } catch {
        // not the JSON error shape (a proxy's page): the status says it
      }
      const details = data?.details ?? null;
      throw new LivehubError(data?.error ?? `HTTP ${response.status}`, {
        code: data?.code ?? "http_error",
        status: response.status,
        details,
        retryAfter: retryAfterOf(response, details),
      });
    }
    if (raw) return response;
    if (response.status === 204) return null;
    return response.json();
  }

  // -- rooms -----------------------------------------------------------------------------

  /** Create a room: `{title, record?, visibility?}` (`"private"`: only viewer-token holders
   * see, join and play it); the reply carries `ownerToken` (shown once). `token`: an API key
   * where the server asks for one. */
  createRoom({ title, record, visibility } = {}, { token } = {}) {
    const body = { title };
    if (record !== undefined) body.record = record;
    if (visibility !== undefined) body.visibility = visibility;
    return this.request("POST", "/api/rooms", { body, token });
  }

  /** A room; with its owner's token, its publish credentials too. */
  getRoom(roomId, { token } = {}) {
    return this.request("GET", `/api/rooms/${encodeURIComponent(roomId)}`, { token });
  }

  /** One page: `{rooms, total, next}` (`next`: the URL of the following page, or null;
   * `total`: `X-Total-Count`, or null from a server that sends none). */
  async listRoomsPage({ status, limit, next } = {}) {
    const response = await this.request("GET", next ?? "/api/rooms", {
      query: next ? undefined : { status, limit },
      raw: true,
    });
    const link = nextLink(response.headers.get("Link"));
    return {
      rooms: await response.json(),
      total: totalOf(response.headers.get("X-Total-Count")),
      next: link === null ? null : new URL(link, `${this.baseUrl}/`).href,
    };
  }

  /** Every room, newest first, page after page (`for await (const room of lh.listRooms())`):
   * follows `Link: rel="next"`, so it never skips or repeats a room however deep it goes. */
  async *listRooms({ status, limit } = {}) {
    let next;
    do {
      const page = await this.listRoomsPage({ status, limit, next });
      yield* page.rooms;
      next = page.next;
    } while (next);
  }

  /** End a room for good (the owner's or the admin token). */
  closeRoom(roomId, { token } = {}) {
    return this.request("POST", `/api/rooms/${encodeURIComponent(roomId)}/close`, { token });
  }

  /** One page of a room's signaling members: `{members, total, limit, offset}` (owner). */
  members(roomId, { token, limit, offset } = {}) {
    return this.request("GET", `/api/rooms/${encodeURIComponent(roomId)}/members`, {
      token,
      query: { limit, offset },
    });
  }

  /** A viewer token for a private room (the owner's or the admin token):
   * `POST /api/rooms/{id}/viewer-tokens` with optional `ttl`, `sub` and `name`. */
  createViewerToken(roomId, options = {}) {
    const { token, ...body } = options;
    return this.request("POST", `/api/rooms/${encodeURIComponent(roomId)}/viewer-tokens`, {
      token,
      body,
    });
  }

  // -- recordings ------------------------------------------------------------------------

  /** A room's recordings, oldest first; `url` made absolute (a `<video src>`). One whose URL
   * is not http(s) (a `javascript:` URL, from a server not to be trusted) is left out. */
  async recordings(roomId, { token } = {}) {
    const list = await this.request(
      "GET",
      `/api/rooms/${encodeURIComponent(roomId)}/recordings`,
      { token },
    );
    if (!Array.isArray(list)) return [];
    return list
      .filter(isObject)
      .map((recording) => ({ ...recording, url: httpUrl(recording.url, `${this.baseUrl}/`) }))
      .filter((recording) => recording.url !== null);
  }

  /** Delete a recording, file and row (the owner's or the admin token). */
  async deleteRecording(recordingId, { token } = {}) {
    await this.request("DELETE", `/api/recordings/${encodeURIComponent(recordingId)}`, { token });
  }

  // -- signaling -------------------------------------------------------------------------

  /** A signaling client on this livehub (it connects at once and reconnects by itself). */
  connect(options = {}) {
    return new SignalingClient(this.wsUrl, { WebSocket: this._WebSocket, ...options });
  }
}

const OPEN = 1;
/** The client's own events and a handle's: a server message of one of these types is no such
 * event (it reaches `message` listeners only), so a server cannot fake a close or a lost room. */
const CLIENT_EVENTS = new Set(["open", "close", "reconnecting", "reconnected", "message"]);
const HANDLE_EVENTS = new Set(["rejoined", "lost"]);
/** Close codes that ask the client to come back slowly: a flood (1008), a client that does not
 * read what its rooms send (1013). Rejoining works at once after either, so only a connection
 * that stays up (maxDelay) starts the backoff again. */
const SLOW_DOWN = new Set([1008, 1013]);
/** The codes a rejoin may fail with that do not refuse it: the socket went away before the
 * answer (`disconnected`), no answer came (`timeout`), or the server could not answer it now. */
const TRANSIENT = new Set(["disconnected", "timeout", "rate_limited", "database_unavailable", "conflict"]);
/** What may wait in the send queue while the socket is not open. 100 messages is half of
 * livehub's default burst (LIVEHUB_RATE_BURST, 200), so the queue and the rejoins that go out
 * before it fit in one burst on the next connection; 1 MiB bounds the memory whatever the
 * messages' size. A frontend that keeps sending while offline meets it, a real one never. */
const MAX_QUEUE = 100;
const MAX_QUEUE_BYTES = 1024 * 1024;
const encoder = new TextEncoder();

/**
 * One signaling WebSocket: requests with ids, typed events, reconnect with backoff and jitter,
 * and the rooms it joined joined again after a reconnect.
 *
 * Events (`client.on(type, fn)`): every server event by its `type` (`joined`, `peer-joined`,
 * `peer-left`, `chat`, `room-status`, `viewer-count`, `presence-mode`, `kicked`, `offer`, …,
 * `error`), `message` (any server event), and the connection's own: `open`, `close`
 * (`{code, reason}`), `reconnecting` (`{attempt, delay}`), `reconnected`.
 *
 * options: `WebSocket` (constructor), `timeout` (ms a request waits for its answer, 10 000),
 * `reconnect` (true), `minDelay` (500 ms), `maxDelay` (15 000 ms), `random` (Math.random),
 * `maxQueue` (100 messages) and `maxQueueBytes` (1 MiB): what may wait while the socket is not
 * open (beyond it a request or notify rejects with `queue_full`, a `sendRaw` emits an `error`
 * event with that code, and nothing is queued).
 * The reconnect delay doubles from minDelay up to maxDelay, and starts again from minDelay
 * once a connection stayed open for maxDelay or joined its rooms again; after a flood close
 * (1008) it is maxDelay at once. A WebSocket constructor that throws is a failed attempt
 * (`close` with code 1006 and `error`, code `websocket_error`), except for an invalid URL
 * (a `SyntaxError`): the first attempt throws it (`invalid_url`), a later one stops the client
 * for good (its rooms emit `lost`, its requests reject with that error). Otherwise the client
 * never stops by itself (close() does).
 */
export class SignalingClient extends Emitter {
  #ws = null;
  #nextId = 1;
  #pending = new Map();
  #queue = [];
  #queueBytes = 0;
  #attempt = 0;
  #timer = null;
  #steady = null;
  #waits = new Set();
  #closed = false;
  #everOpened = false;
  #slowDown = false;
  /** The error that stopped the client for good (an invalid URL), or null. */
  #failure = null;
  /** opened() promises waiting while the client may still stop by itself. */
  #openWaiters = new Set();

  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = {
      timeout: 10_000,
      reconnect: true,
      minDelay: 500,
      maxDelay: 15_000,
      random: Math.random,
      maxQueue: MAX_QUEUE,
      maxQueueBytes: MAX_QUEUE_BYTES,
      ...options,
    };
    if (typeof this.options.WebSocket !== "function") {
      throw new LivehubError(
        "No WebSocket constructor: pass options.WebSocket (in Node 20: the `ws` package, or " +
          "run node --experimental-websocket)",
        { code: "no_websocket" },
      );
    }
    /** @type {Map<string, RoomHandle>} the rooms joined, by id (rejoined after a reconnect) */
    this.rooms = new Map();
    /** this connection's peer id (from the last `joined`; it changes on reconnect) */
    this.peerId = null;
    this.#open(true);
  }

  get connected() {
    return this.#ws !== null && this.#ws.readyState === OPEN;
  }

  /** Resolves once the socket is open (at once if it is). */
  opened() {
    if (this.connected) return Promise.resolve();
    if (this.#closed) {
      return Promise.reject(this.#failure ?? new LivehubError("Client closed", { code: "closed" }));
    }
    if (this.#ws === null && !this.options.reconnect) return Promise.reject(SignalingClient.#gone());
    return new Promise((resolve, reject) => {
      const fail = (err) => {
        off();
        reject(err);
      };
      const off = this.on("open", () => {
        off();
        this.#openWaiters.delete(fail);
        resolve();
      });
      this.#openWaiters.add(fail);
    });
  }

  #open(first = false) {
    let ws;
    try {
      ws = new this.options.WebSocket(this.url);
    } catch (err) {
      // a constructor that throws (a browser refusing: SecurityError) is a failed attempt,
      // not the end of reconnecting; an invalid URL (SyntaxError) never gets better
      const invalid = err?.name === "SyntaxError";
      const error = new LivehubError(`Cannot open a WebSocket to ${this.url}: ${err?.message ?? err}`, {
        code: invalid ? "invalid_url" : "websocket_error",
        details: { name: err?.name ?? null },
      });
      if (invalid && first) throw error;
      this.#ws = null;
      // after the constructor returned, so that listeners added then hear it
      queueMicrotask(() => {
        if (this.#closed) return;
        this.emit("close", { code: 1006, reason: error.message, error });
        if (invalid) this.#fail(error);
        else this.#scheduleReconnect(1006);
      });
      return;
    }
    this.#ws = ws;
    let ended = false;
    const end = (code, reason) => {
      // Node's built-in WebSocket reports a failed attempt with an `error` event alone; a
      // browser's sends `close` after it: either ends this socket, once. (An `error` event
      // comes only when the connection failed, and the close code is 1006 then: a close
      // frame from the server, 1008 say, fires `close` alone, with its code.)
      if (ended) return;
      ended = true;
      if (this.#ws === ws) {
        this.#ws = null;
        clearTimeout(this.#steady);
      }
      this.#dropPending();
      this.emit("close", { code, reason });
      this.#scheduleReconnect(code);
    };
    ws.onopen = () => {
      const again = this.#everOpened;
      this.#everOpened = true;
      // the backoff starts again once this connection proved itself: open for maxDelay, or
      // its rooms joined again (#rejoin). A server that accepts and then drops every
      // connection (a broken proxy, a flood close) is not retried ever faster.
      clearTimeout(this.#steady);
      this.#steady = setTimeout(() => {
        if (this.#ws !== ws) return;
        this.#attempt = 0;
        this.#slowDown = false;
      }, this.options.maxDelay);
      this.emit("open", {});
      // the rooms first (their joins go out now, in order), then what was sent meanwhile
      if (again) this.#rejoin(ws);
      this.#queueBytes = 0;
      for (const { frame, id } of this.#queue.splice(0)) {
        ws.send(frame);
        const pending = id === null ? undefined : this.#pending.get(id);
        if (pending) pending.sent = true;
      }
    };
    ws.onmessage = (event) => this.#receive(event.data);
    ws.onerror = () => end(1006, "error");
    ws.onclose = (event) => end(event?.code ?? 1006, event?.reason ?? "");
  }

  /** The delay before retry number `attempt` (0 first): its ceiling doubles from minDelay up
   * to maxDelay. */
  #backoff(attempt) {
    return this.#jitter(Math.min(this.options.maxDelay, this.options.minDelay * 2 ** attempt));
  }

  /** "Equal jitter": half the ceiling for sure, half at random, so that a server restart does
   * not bring every client back in the same millisecond. */
  #jitter(ceiling) {
    return Math.round(ceiling / 2 + this.options.random() * (ceiling / 2));
  }

  /** What opened() rejects with once the socket is gone and `reconnect: false` brings none. */
  static #gone() {
    return new LivehubError("Disconnected, and reconnect is off", { code: "disconnected" });
  }

  #scheduleReconnect(code) {
    if (this.#closed) return;
    if (!this.options.reconnect) {
      // no attempt follows: opened() promises waiting for one would wait forever
      const waiters = [...this.#openWaiters];
      this.#openWaiters.clear();
      for (const fail of waiters) fail(SignalingClient.#gone());
      return;
    }
    // 1008: the server closed this connection for flooding it (its rate limit): come back
    // after the longest delay, whatever the backoff had reached
    const delay = code === 1008 ? this.#jitter(this.options.maxDelay) : this.#backoff(this.#attempt);
    // after 1008 or 1013 a rejoin does not start the backoff again (#rejoin): a client too
    // slow for its room would be back twice a second, a leave and a join every member hears
    this.#slowDown ||= SLOW_DOWN.has(code);
    this.#attempt += 1;
    this.emit("reconnecting", { attempt: this.#attempt, delay });
    this.#timer = setTimeout(() => {
      this.#timer = null;
      if (!this.#closed) this.#open();
    }, delay);
  }

  /** Join every room again on the socket `ws` that just opened; `reconnected` once they all
   * have their answer on it. */
  async #rejoin(ws) {
    const rooms = [...this.rooms.values()];
    await Promise.all(rooms.map((handle) => this.#rejoinRoom(handle, ws)));
    // cut off before every answer came: the next connection joins them again
    if (this.#ws !== ws || !this.connected) return;
    // the server answered: this connection works (unless it was closed for going too fast or
    // reading too slowly: that shows only later)
    if (rooms.length > 0 && !this.#slowDown) this.#attempt = 0;
    this.emit("reconnected", { rooms: [...this.rooms.keys()] });
  }

  /** One room's rejoin. Only the server's refusal (`room_ended`, `room_not_found`,
   * `forbidden`, `banned`, ...) loses the room. A socket gone before the answer keeps it for
   * the next connection; no answer (`timeout`: the server's rate limit drops unread) or a
   * passing failure of the server's (`rate_limited`, `database_unavailable`, `conflict`) is
   * retried on this connection after a backoff while it stays open. */
  async #rejoinRoom(handle, ws) {
    const current = () =>
      !this.#closed && this.#ws === ws && this.connected && this.rooms.get(handle.roomId) === handle;
    for (let tries = 0; current(); tries += 1) {
      try {
        const joined = await this.request({ type: "join", roomId: handle.roomId, ...handle.options });
        if (this.rooms.get(handle.roomId) === handle) handle._joined(joined, true);
        return;
      } catch (err) {
        if (this.#closed || this.rooms.get(handle.roomId) !== handle) return; // closed, or left
        if (!TRANSIENT.has(err.code)) {
          this.rooms.delete(handle.roomId);
          handle._lost(err);
          return;
        }
        if (!current()) return; // the socket went away: the next open joins it again
        await this.#wait(this.#backoff(tries));
      }
    }
  }

  /** Resolves after `ms`, or at once when the client is closed (no timer outlives it). */
  #wait(ms) {
    return new Promise((ok) => {
      const done = () => {
        clearTimeout(timer);
        this.#waits.delete(done);
        ok();
      };
      const timer = setTimeout(done, ms);
      this.#waits.add(done);
    });
  }

  /** Requests sent on a socket that is gone have lost their answer: they reject with
   * `disconnected`. Those still queued (never sent) go out on the next connection. */
  #dropPending() {
    for (const [id, pending] of this.#pending) {
      if (!pending.sent) continue;
      this.#pending.delete(id);
      clearTimeout(pending.timer);
      pending.reject(new LivehubError("Disconnected before the answer came", { code: "disconnected" }));
    }
  }

  #receive(data) {
    let event;
    try {
      event = JSON.parse(typeof data === "string" ? data : new TextDecoder().decode(data));
    } catch {
      return;
    }
    // every server message is an object with a string type: anything else (`null`, a number,
    // an array) would throw in the socket's handler below, and is no message
    if (!isObject(event) || typeof event.type !== "string") return;
    if (event.type === "joined") this.peerId = event.peerId;
    // a reply carries the request's id in `id`; a chat line's `id` is the line's own, so the
    // sender's copy of its chat carries the request's in `requestId`
    const replyTo = event.type === "chat" ? event.requestId : event.id;
    const pending = replyTo === undefined ? undefined : this.#pending.get(replyTo);
    if (pending) {
      this.#pending.delete(replyTo);
      clearTimeout(pending.timer);
      if (event.type === "error") {
        pending.reject(
          new LivehubError(String(event.message ?? "error"), {
            code: typeof event.code === "string" ? event.code : "error",
            details: { inReplyTo: event.inReplyTo ?? null, roomId: event.roomId ?? null },
          }),
        );
      } else {
        pending.resolve(event);
      }
    }
    this.emit("message", event);
    if (!CLIENT_EVENTS.has(event.type)) this.emit(event.type, event);
    const handle = event.roomId === undefined ? undefined : this.rooms.get(event.roomId);
    if (handle) handle._event(event);
  }

  /** Send a message as it is (no id, no answer awaited). Queued until the socket is open; a
   * full queue (maxQueue, maxQueueBytes) refuses it with an `error` event (`queue_full`). */
  sendRaw(message) {
    const refused = this.#send(message, null);
    if (!refused) return;
    // the shape of the server's error events, so that the same handlers see it
    const event = { type: "error", code: refused.code, message: refused.message };
    if (typeof message?.type === "string") event.inReplyTo = message.type;
    if (typeof message?.roomId === "string") event.roomId = message.roomId;
    event.details = refused.details;
    this.emit("error", event);
    if (event.roomId !== undefined) this.rooms.get(event.roomId)?.emit("error", event);
  }

  /** Send now, or queue until the socket is open; returns the LivehubError (`queue_full`)
   * of a message the full queue refuses, else null. */
  #send(message, id) {
    const frame = JSON.stringify(id === null ? message : { ...message, id });
    if (this.connected) {
      this.#ws.send(frame);
      const pending = id === null ? undefined : this.#pending.get(id);
      if (pending) pending.sent = true;
    } else if (!this.#closed) {
      const bytes = encoder.encode(frame).length;
      const { maxQueue, maxQueueBytes } = this.options;
      if (this.#queue.length + 1 > maxQueue || this.#queueBytes + bytes > maxQueueBytes) {
        return new LivehubError(
          `Not connected, and ${this.#queue.length} messages (${this.#queueBytes} bytes) wait already: ` +
            `${message?.type ?? "the message"} was not queued`,
          { code: "queue_full", details: { maxQueue, maxQueueBytes } },
        );
      }
      this.#queue.push({ frame, id, bytes });
      this.#queueBytes += bytes;
    }
    return null;
  }

  /** Take request `id` out of the queue (it timed out before the socket opened). */
  #unqueue(id) {
    this.#queue = this.#queue.filter((queued) => queued.id !== id);
    this.#queueBytes = this.#queue.reduce((sum, queued) => sum + queued.bytes, 0);
  }

  /** Send `message` with a fresh request id; resolves with the event that answers it
   * (`joined`, `left`, your own `chat`) or rejects with its `error` as a LivehubError. With
   * `expect` (a predicate), a message the server does not answer resolves with the first
   * event that matches instead (close-room: its room-status). */
  request(message, { timeout = this.options.timeout, expect, id: given } = {}) {
    if (this.#closed) return Promise.reject(new LivehubError("Client closed", { code: "closed" }));
    const id = given ?? this.#nextId++;
    if (this.#pending.has(id)) {
      return Promise.reject(new LivehubError(`A request with id ${id} is pending`, { code: "duplicate_id" }));
    }
    return new Promise((resolve, reject) => {
      let off = () => {};
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        this.#unqueue(id);
        off();
        reject(new LivehubError(`No answer to ${message.type} within ${timeout} ms`, { code: "timeout" }));
      }, timeout);
      this.#pending.set(id, {
        resolve: (event) => {
          off();
          resolve(event);
        },
        reject: (err) => {
          off();
          reject(err);
        },
        timer,
        sent: false,
      });
      if (expect) {
        off = this.on("message", (event) => {
          if (event.type !== "error" && expect(event) && this.#pending.has(id)) {
            const pending = this.#pending.get(id);
            this.#pending.delete(id);
            clearTimeout(pending.timer);
            pending.resolve(event);
          }
        });
      }
      const refused = this.#send(message, id);
      if (refused) {
        this.#pending.delete(id);
        clearTimeout(timer);
        off();
        reject(refused);
      }
    });
  }

  /** Send `message` with a fresh request id, for the messages livehub does not answer when
   * they succeed (`stage-invite`, `stage-decline`, `mute`, `unmute`, ...): resolves with the id
   * once the message is handed to the socket (or queued until it opens). A refusal comes as
   * an `error` event carrying that `id` (and `inReplyTo`). */
  notify(message) {
    if (this.#closed) return Promise.reject(new LivehubError("Client closed", { code: "closed" }));
    const id = this.#nextId++;
    const refused = this.#send(message, id);
    return refused ? Promise.reject(refused) : Promise.resolve(id);
  }

  /** Join a room: resolves with its handle (carrying the `joined` event's data) once joined.
   * `role: "host"` needs the room's owner `token`; a private room's viewers give their viewer
   * `token`; a stage guest on a new connection gives its `stageToken` (the handle keeps the
   * one of its `stage-credentials`). Joined again after every reconnect. Joining a room
   * again (a new name or role) updates its handle, which keeps its stage token unless
   * `stageToken` gives another. */
  async join(roomId, { name, role, token, stageToken } = {}) {
    const options = {};
    if (name !== undefined) options.name = name;
    if (role !== undefined) options.role = role;
    if (token !== undefined && token !== null) options.token = token;
    if (stageToken !== undefined && stageToken !== null) options.stageToken = stageToken;
    const joined = await this.request({ type: "join", roomId, ...options });
    let handle = this.rooms.get(roomId);
    if (!handle) {
      handle = new RoomHandle(this, roomId, options);
      this.rooms.set(roomId, handle);
    } else {
      // joined again (a new name, a new role): a stage guest stays one, and keeps the stage
      // token its rejoins carry, unless this join gave another
      const kept = handle.options.stageToken;
      handle.options = options;
      if (options.stageToken === undefined && kept !== undefined) options.stageToken = kept;
    }
    handle._joined(joined, false);
    return handle;
  }

  /** Stopped for good by `error` (an invalid URL on a reconnect): like close(), but pending
   * requests and opened() reject with it, and every room's handle emits `lost`. */
  #fail(error) {
    this.#failure = error;
    const rooms = [...this.rooms.values()];
    this.#stop(error);
    for (const handle of rooms) handle._lost(error);
  }

  /** Close for good: no reconnect; pending requests and waiting opened() reject with `closed`. */
  close() {
    this.#stop(new LivehubError("Client closed", { code: "closed" }));
  }

  #stop(error) {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    clearTimeout(this.#steady);
    for (const done of [...this.#waits]) done();
    // opened() promises still waiting reject as one asked for now would (with `closed`, or
    // with the error that stopped the client); their `open` listeners go with them
    const waiters = [...this.#openWaiters];
    this.#openWaiters.clear();
    for (const fail of waiters) fail(error);
    this.#queue = [];
    this.#queueBytes = 0;
    const ws = this.#ws;
    this.#ws = null;
    for (const [, pending] of this.#pending) {
      clearTimeout(pending.timer);
      pending.reject(error);
    }
    this.#pending.clear();
    this.rooms.clear();
    if (ws) {
      try {
        ws.close(1000);
      } catch {
        // already closing
      }
    }
  }

  _forget(roomId) {
    this.rooms.delete(roomId);
  }
}

/**
 * A room this client joined. `data` is the last `joined` event; `room`, `members`,
 * `viewerCount` and `presence` follow the room's events. Events (`handle.on(type, fn)`): the
 * server events of this room (`chat`, `peer-joined`, `peer-left`, `room-status`,
 * `viewer-count`, `presence-mode`, `kicked`, `offer`, `answer`, `candidate`, `error`), and
 * `rejoined` (the `joined` after a reconnect) and `lost` (the server refused the rejoin: the
 * room ended or is gone, the member is banned, ...; the handle is done). In a counted room
 * (presence "counted") `members` holds the hosts and this member, as the server lists them.
 */
export class RoomHandle extends Emitter {
  constructor(client, roomId, options) {
    super();
    this.client = client;
    this.roomId = roomId;
    this.options = options;
    this.data = null;
    this.members = new Map();
    this.left = false;
  }

  get peerId() {
    return this.data?.peerId ?? null;
  }

  get role() {
    return this.data?.role ?? null;
  }

  get room() {
    return this.data?.room ?? null;
  }

  get viewerCount() {
    return this.data?.viewerCount ?? 0;
  }

  get presence() {
    return this.data?.presence ?? "full";
  }

  _joined(joined, again) {
    this.data = { ...joined };
    delete this.data.id;
    this.members = memberMap(joined.members);
    if (again) this.emit("rejoined", this.data);
  }

  _lost(error) {
    this.left = true;
    this.emit("lost", { error });
  }

  _event(event) {
    const data = this.data;
    if (data) {
      switch (event.type) {
        case "peer-joined":
          if (isObject(event.peer)) this.members.set(event.peer.peerId, event.peer);
          break;
        case "peer-left":
          this.members.delete(event.peerId);
          break;
        case "presence-mode":
          data.presence = event.presence;
          data.viewerCount = event.viewerCount;
          if (Array.isArray(event.members)) {
            this.members = memberMap(event.members);
          } else if (event.presence === "counted") {
            // viewers are no longer announced (their departures neither): keep what a counted
            // room lists, the hosts and this member
            for (const [peerId, member] of this.members) {
              if (member.role !== "host" && peerId !== this.peerId) this.members.delete(peerId);
            }
          }
          break;
        case "viewer-count":
          data.viewerCount = event.viewerCount;
          break;
        case "room-status":
          data.room = event.room;
          break;
        case "stage":
          data.room = { ...data.room, stage: event.stage };
          break;
        case "kicked":
          this.left = true;
          this.client._forget(this.roomId);
          break;
        case "stage-credentials":
          // rejoined after a reconnect with it: the guest takes its place on stage again
          if (event.publish?.token) this.options.stageToken = event.publish.token;
          break;
        case "stage-removed":
          if (event.peerId === this.peerId) delete this.options.stageToken;
          break;
        default:
      }
    }
    if (!HANDLE_EVENTS.has(event.type)) this.emit(event.type, event);
  }

  /** Send a chat line; resolves with your own `chat` event as the room got it. */
  chat(text) {
    return this.client.request({ type: "chat", roomId: this.roomId, text });
  }

  /** Relay `payload` as `type` (`offer`, `answer`, `candidate`) to the peer `to`, or to every
   * other member when `to` is null. Not acknowledged; a refusal comes as an `error` event. */
  send(to, type, payload) {
    const message = { type, roomId: this.roomId, payload: payload ?? null };
    if (to !== null && to !== undefined) message.to = to;
    this.client.sendRaw(message);
  }

  /** Remove a member (host only); resolves once it is out. */
  kick(peerId) {
    return this.client.request(
      { type: "kick", roomId: this.roomId, peerId },
      {
        expect: (event) =>
          event.type === "peer-left" && event.roomId === this.roomId && event.peerId === peerId,
      },
    );
  }

  /** End the room for good (host only); resolves with the `room-status` "ended". */
  close() {
    return this.client.request(
      { type: "close-room", roomId: this.roomId },
      {
        expect: (event) =>
          event.type === "room-status" && event.roomId === this.roomId && event.status === "ended",
      },
    );
  }

  /** This member's stage publish token while it is a stage guest, else null. */
  get stageToken() {
    return this.options.stageToken ?? null;
  }

  #is(type, test) {
    return (event) => event.type === type && event.roomId === this.roomId && test(event);
  }

  // -- the stage (co-hosts publishing their own stream to SRS) ----------------------------

  /** Invite a member on stage (host only). livehub does not answer a delivered invitation:
   * resolves with the request id once sent; a refusal comes as an `error` event with it. */
  inviteToStage(peerId) {
    return this.client.notify({ type: "stage-invite", roomId: this.roomId, to: peerId });
  }

  /** Accept this member's stage invitation: resolves with its `stage-credentials` (publish
   * with `publish.whipUrl`); rejects with `not_invited`, `stage_full`, ... */
  acceptStage() {
    return this.client.request(
      { type: "stage-accept", roomId: this.roomId },
      { expect: this.#is("stage-credentials", () => true) },
    );
  }

  /** Decline this member's stage invitation (the inviting host hears `stage-declined`).
   * Not answered: resolves with the request id once sent. */
  declineStage() {
    return this.client.notify({ type: "stage-decline", roomId: this.roomId });
  }

  /** Take a guest off the stage, or withdraw its invitation (host only). Not answered:
   * resolves with the request id once sent; every member hears the new `stage`. */
  removeFromStage(peerId) {
    return this.client.notify({ type: "stage-remove", roomId: this.roomId, peerId });
  }

  /** Leave the stage (a guest): resolves with the `stage-removed` naming this member. */
  leaveStage() {
    const me = this.peerId;
    return this.client.request(
      { type: "stage-leave", roomId: this.roomId },
      { expect: this.#is("stage-removed", (event) => event.peerId === me) },
    );
  }

  // -- moderation (hosts) -----------------------------------------------------------------

  /** Delete a chat line for everyone by its `id`: resolves with the `chat-deleted` event.
   * (The line's id is the message's `id`, so it is the request's id too.) */
  deleteChat(chatId) {
    return this.client.request(
      { type: "chat-delete", roomId: this.roomId, id: chatId },
      { id: chatId, expect: this.#is("chat-deleted", (event) => event.id === chatId) },
    );
  }

  /** Mute a member's chat for `seconds` (1 s to 7 days; livehub's default: 300). Not answered:
   * resolves with the request id once sent; the member hears `muted`. */
  mute(peerId, seconds) {
    const message = { type: "mute", roomId: this.roomId, peerId };
    if (seconds !== undefined) message.seconds = seconds;
    return this.client.notify(message);
  }

  /** End a member's mute. Not answered: resolves with the request id once sent. */
  unmute(peerId) {
    return this.client.notify({ type: "unmute", roomId: this.roomId, peerId });
  }

  /** Slow mode: a non-host's chat lines at most one every `seconds` (0 = off, at most 3600);
   * resolves with the `room-settings` every member hears. */
  setSlowMode(seconds) {
    return this.client.request(
      { type: "slow-mode", roomId: this.roomId, seconds },
      { expect: this.#is("room-settings", (event) => event.slowMode === seconds) },
    );
  }

  /** Leave the room (not joined again after a reconnect). A handle that is done already
   * (kicked, lost, left) has nothing to leave: it resolves at once, and the handle of the
   * same room joined again since stays joined. */
  async leave() {
    if (this.left || this.client.rooms.get(this.roomId) !== this) {
      this.left = true;
      return;
    }
    this.left = true;
    this.client._forget(this.roomId);
    if (!this.client.connected) return;
    await this.client.request({ type: "leave", roomId: this.roomId });
  }
}

/** Wait until `pc` has gathered its candidates (at most `ms`): WHIP/WHEP endpoints such as
 * SRS's take one offer and no trickled candidates. */
function iceGathered(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState !== "complete") return;
      pc.removeEventListener?.("icegatheringstatechange", done);
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      pc.removeEventListener?.("icegatheringstatechange", done);
      resolve();
    }, ms);
    pc.addEventListener?.("icegatheringstatechange", done);
  });
}

/** The offer/answer exchange of WHIP and WHEP (RFC 9725, the WHEP draft): POST the offer as
 * application/sdp, take the answer; the Location header names the session to DELETE at the
 * end. Returns `stop()`, which closes `pc` and ends the session (best effort). */
async function exchange(kind, url, pc, options) {
  const doFetch = options.fetch ?? globalThis.fetch?.bind(globalThis);
  let location = null;
  const stop = () => {
    pc.close();
    if (location) doFetch(location, { method: "DELETE" }).catch(() => {});
    location = null;
  };
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc, options.iceGatheringTimeout ?? 2000);
    let response;
    try {
      response = await doFetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/sdp" },
        body: pc.localDescription.sdp,
      });
    } catch (err) {
      throw new LivehubError(`Cannot reach the ${kind} endpoint: ${err?.message ?? err}`, {
        code: "network_error",
      });
    }
    const answer = await response.text();
    if (response.status !== 200 && response.status !== 201) {
      throw new LivehubError(`${kind} refused: HTTP ${response.status} ${answer.trim().slice(0, 120)}`, {
        code: `${kind.toLowerCase()}_failed`,
        status: response.status,
      });
    }
    const header = response.headers.get("Location");
    location = header ? new URL(header, url).href : null;
    await pc.setRemoteDescription({ type: "answer", sdp: answer });
  } catch (err) {
    stop();
    throw err;
  }
  return stop;
}

function peerConnection(options) {
  const RTCPeerConnection = options.RTCPeerConnection ?? globalThis.RTCPeerConnection;
  if (typeof RTCPeerConnection !== "function") {
    throw new LivehubError("No RTCPeerConnection: WHIP and WHEP need WebRTC", { code: "no_webrtc" });
  }
  return new RTCPeerConnection(options.configuration ?? {});
}

/**
 * Play a stream with WHEP (SRS's `playUrls.whep`): resolves with `{pc, stream, stop()}` once
 * SRS answered; attach `stream` to a `<video>` (`video.srcObject = stream`). `stop()` closes
 * the connection and ends the WHEP session. Needs WebRTC: browsers have it; elsewhere pass
 * `RTCPeerConnection` (and `MediaStream`).
 */
export async function playWhep(whepUrl, options = {}) {
  const pc = peerConnection(options);
  const MediaStreamCtor = options.MediaStream ?? globalThis.MediaStream;
  const stream = MediaStreamCtor ? new MediaStreamCtor() : null;
  pc.addTransceiver("audio", { direction: "recvonly" });
  pc.addTransceiver("video", { direction: "recvonly" });
  pc.ontrack = (event) => stream?.addTrack(event.track);
  const stop = await exchange("WHEP", whepUrl, pc, options);
  return { pc, stream, stop };
}

/**
 * Publish a MediaStream (a camera: `navigator.mediaDevices.getUserMedia`) with WHIP (the
 * owner's `publish.whipUrl`, which carries the publish token): resolves with `{pc, stop()}`
 * once SRS answered; the room goes live when SRS accepts the stream (its `room-status`).
 */
export async function publishWhip(whipUrl, stream, options = {}) {
  const pc = peerConnection(options);
  for (const track of stream.getTracks()) {
    pc.addTransceiver(track, { direction: "sendonly", streams: [stream] });
  }
  const stop = await exchange("WHIP", whipUrl, pc, options);
  return { pc, stop };
}

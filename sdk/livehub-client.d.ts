// Type declarations of livehub-client.js (the livehub JavaScript SDK). docs/frontend.md.

export declare const VERSION: string;

// -- REST shapes ---------------------------------------------------------------------------

export type RoomStatus = "preparing" | "live" | "ended";
export type Role = "viewer" | "host";

export interface PlayUrls {
  webrtc: string;
  whep: string;
  flv: string;
  hls: string;
}

export interface Room {
  id: string;
  title: string;
  streamKey: string;
  status: RoomStatus;
  startTime: number | null;
  endTime: number | null;
  createdAt: number;
  viewerCount: number;
  playerCount: number;
  reconnecting: boolean;
  playUrls: PlayUrls;
  visibility: "public" | "private";
  /** The guests on stage, in the order they joined it. */
  stage: StageGuest[];
}

export interface PublishCredentials {
  token: string;
  rtmpUrl: string;
  obsServer: string;
  obsStreamKey: string;
  whipUrl: string;
  srtUrl: string;
}

export interface OwnerRoom extends Room {
  publish: PublishCredentials;
  record: boolean;
}

export interface RoomCreated extends OwnerRoom {
  /** Shown once: keep it to close the room or join as host. */
  ownerToken: string;
}

export interface Member {
  peerId: string;
  name: string;
  role: Role;
}

export interface MembersPage {
  members: Member[];
  total: number;
  limit: number;
  offset: number;
}

export interface Recording {
  id: string;
  roomId: string;
  startedAt: number;
  endedAt: number;
  durationMs: number;
  sizeBytes: number;
  /** Absolute URL of the MP4 (range requests: seekable in a video element). */
  url: string;
}

export interface ViewerToken {
  /** An HS256 JWT: join and play the private room with it. */
  token: string;
  /** Epoch ms. */
  expiresAt: number;
}

export interface RoomsPage {
  rooms: Room[];
  /** How many rooms match, over all pages (X-Total-Count; null if the server sends none). */
  total: number | null;
  /** The next page's URL, or null on the last page. */
  next: string | null;
}

export interface ErrorOptions {
  code?: string;
  status?: number;
  details?: Record<string, unknown> | null;
  retryAfter?: number | null;
}

/** Every failure the SDK reports. */
export declare class LivehubError extends Error {
  constructor(message: string, options?: ErrorOptions);
  /** The server's snake_case code, or the SDK's own: network_error, timeout, disconnected,
   * closed, no_websocket, no_fetch, no_base_url, no_webrtc, whep_failed, whip_failed,
   * http_error, queue_full (the send queue is full while disconnected), websocket_error (the
   * WebSocket constructor threw: a failed attempt), invalid_url (it threw a SyntaxError). */
  code: string;
  /** The HTTP status; 0 when there is none (signaling, network). */
  status: number;
  details: Record<string, unknown> | null;
  /** Seconds to wait before retrying (Retry-After of a 429), or null. */
  retryAfter: number | null;
}

export interface TokenOption {
  /** Bearer token for this call (owner token, API key, admin token). */
  token?: string;
}

type FetchLike = (input: string, init?: RequestInit) => Promise<Response>;

export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  onclose: ((event: { code?: number; reason?: string }) => void) | null;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export interface LivehubOptions {
  /** Default: the page's origin. */
  baseUrl?: string;
  /** Default bearer token of every call. */
  token?: string | null;
  /** Default: baseUrl with ws(s): and /ws. */
  wsUrl?: string;
  fetch?: FetchLike;
  WebSocket?: WebSocketConstructor;
}

export declare function nextLink(header: string | null): string | null;

export declare class Livehub {
  constructor(options?: LivehubOptions);
  readonly baseUrl: string;
  token: string | null;
  readonly wsUrl: string;

  request<T = unknown>(
    method: string,
    path: string,
    options?: { body?: unknown; token?: string; query?: Record<string, unknown>; raw?: boolean },
  ): Promise<T>;

  createRoom(
    room: { title: string; record?: boolean; visibility?: "public" | "private" },
    options?: TokenOption,
  ): Promise<RoomCreated>;
  getRoom(roomId: string, options?: TokenOption): Promise<Room | OwnerRoom>;
  listRoomsPage(options?: { status?: RoomStatus; limit?: number; next?: string | null }): Promise<RoomsPage>;
  listRooms(options?: { status?: RoomStatus; limit?: number }): AsyncGenerator<Room, void, undefined>;
  closeRoom(roomId: string, options?: TokenOption): Promise<{ success: boolean; room: Room }>;
  members(roomId: string, options?: TokenOption & { limit?: number; offset?: number }): Promise<MembersPage>;
  /** POST /api/rooms/{id}/viewer-tokens (the owner's token, an API key or the admin token):
   * a private room's viewer token. `ttl` in seconds (3600; at most 7 days); `sub` and `name`
   * become the JWT's claims. */
  createViewerToken(
    roomId: string,
    options?: TokenOption & { ttl?: number; sub?: string; name?: string },
  ): Promise<ViewerToken>;
  recordings(roomId: string, options?: TokenOption): Promise<Recording[]>;
  deleteRecording(recordingId: string, options?: TokenOption): Promise<void>;

  connect(options?: SignalingOptions): SignalingClient;
}

// -- signaling events (docs/protocol.md) --------------------------------------------------

export interface JoinedEvent {
  type: "joined";
  roomId: string;
  peerId: string;
  role: Role;
  room: Room;
  members: Member[];
  presence: "full" | "counted";
  viewerCount: number;
  /** The room's slow mode: seconds between a non-host's chat lines; 0 = off. */
  slowMode: number;
  id?: string | number;
}
export interface PeerJoinedEvent {
  type: "peer-joined";
  roomId: string;
  peer: Member;
}
export interface PeerLeftEvent {
  type: "peer-left";
  roomId: string;
  peerId: string;
}
export interface PresenceModeEvent {
  type: "presence-mode";
  roomId: string;
  presence: "full" | "counted";
  viewerCount: number;
  members?: Member[];
}
export interface LeftEvent {
  type: "left";
  roomId: string;
  id?: string | number;
}
export interface KickedEvent {
  type: "kicked";
  roomId: string;
  by: string;
}
export interface ViewerCountEvent {
  type: "viewer-count";
  roomId: string;
  viewerCount: number;
}
export interface RoomStatusEvent {
  type: "room-status";
  roomId: string;
  status: RoomStatus;
  room: Room;
}
export interface ChatEvent {
  type: "chat";
  roomId: string;
  from: string;
  name: string;
  text: string;
  ts: number;
  /** The line's own id (the server's): what `chat-delete` names. */
  id: string;
  /** The sender's role in the room. */
  role: "viewer" | "host";
  /** Only on the sender's own copy, when its message had an id: that id. */
  requestId?: string | number;
}
export interface RelayEvent<T extends "offer" | "answer" | "candidate" = "offer" | "answer" | "candidate"> {
  type: T;
  roomId: string;
  payload: unknown;
  from: string;
  to?: string;
}
export interface ErrorEvent {
  type: "error";
  code: string;
  message: string;
  inReplyTo?: string;
  roomId?: string;
  id?: string | number;
  /** The SDK's own `queue_full` (a `sendRaw` the full send queue refused): its bounds. */
  details?: Record<string, unknown> | null;
}

export interface StageGuest {
  peerId: string;
  name: string;
  streamKey: string;
  live: boolean;
  playUrls: PlayUrls;
}
export interface StageEvent {
  type: "stage";
  roomId: string;
  stage: StageGuest[];
}
export interface StageInviteEvent {
  type: "stage-invite";
  roomId: string;
  /** The inviting host. */
  from: string;
  name: string;
}
export interface StageCredentialsEvent {
  type: "stage-credentials";
  roomId: string;
  streamKey: string;
  /** This guest's own publish credentials (WHIP, RTMP, SRT). */
  publish: PublishCredentials;
}
export interface StageDeclinedEvent {
  type: "stage-declined";
  roomId: string;
  peerId: string;
  name: string;
}
export interface StageRemovedEvent {
  type: "stage-removed";
  roomId: string;
  peerId: string;
  /** Who removed it (itself when it left). */
  by?: string;
}
export interface ChatDeletedEvent {
  type: "chat-deleted";
  roomId: string;
  /** The deleted line's id. */
  id: string;
}
export interface MutedEvent {
  type: "muted";
  roomId: string;
  peerId: string;
  /** Epoch ms. */
  until: number;
  by: string;
}
export interface UnmutedEvent {
  type: "unmuted";
  roomId: string;
  peerId: string;
  by: string;
}
export interface RoomSettingsEvent {
  type: "room-settings";
  roomId: string;
  /** Seconds between a non-host's chat lines; 0 = off. */
  slowMode: number;
}

export type ServerEvent =
  | JoinedEvent
  | PeerJoinedEvent
  | PeerLeftEvent
  | PresenceModeEvent
  | LeftEvent
  | KickedEvent
  | ViewerCountEvent
  | RoomStatusEvent
  | ChatEvent
  | RelayEvent
  | StageEvent
  | StageInviteEvent
  | StageCredentialsEvent
  | StageDeclinedEvent
  | StageRemovedEvent
  | ChatDeletedEvent
  | MutedEvent
  | UnmutedEvent
  | RoomSettingsEvent
  | ErrorEvent;

export interface RoomEvents {
  "peer-joined": PeerJoinedEvent;
  "peer-left": PeerLeftEvent;
  "presence-mode": PresenceModeEvent;
  "viewer-count": ViewerCountEvent;
  "room-status": RoomStatusEvent;
  kicked: KickedEvent;
  chat: ChatEvent;
  offer: RelayEvent<"offer">;
  answer: RelayEvent<"answer">;
  candidate: RelayEvent<"candidate">;
  stage: StageEvent;
  "stage-invite": StageInviteEvent;
  "stage-credentials": StageCredentialsEvent;
  "stage-declined": StageDeclinedEvent;
  "stage-removed": StageRemovedEvent;
  "chat-deleted": ChatDeletedEvent;
  muted: MutedEvent;
  unmuted: UnmutedEvent;
  "room-settings": RoomSettingsEvent;
  error: ErrorEvent;
  joined: JoinedEvent;
  left: LeftEvent;
  /** Joined again after a reconnect (new peerId, fresh members). */
  rejoined: JoinedEvent;
  /** The server refused the rejoin after a reconnect (`room_ended`, `room_not_found`,
   * `forbidden`, `banned`, ...): the handle is done. A rejoin cut off by another drop is not
   * lost: the next connection sends it again. */
  lost: { error: LivehubError };
}

export interface ClientEvents extends Omit<RoomEvents, "rejoined" | "lost"> {
  message: ServerEvent;
  open: Record<string, never>;
  /** `error`: when the WebSocket constructor threw (code 1006 then): `websocket_error`, or
   * `invalid_url`, after which the client is stopped for good. */
  close: { code: number; reason: string; error?: LivehubError };
  reconnecting: { attempt: number; delay: number };
  /** Every room has its answer on the new connection: `rooms`, those joined again. */
  reconnected: { rooms: string[] };
}

/** Events of types this version does not know (new server events, e.g. a future `stage`)
 * arrive too, untyped: new types may be added; ignore those you do not know. */
export type UnknownEvent = { type: string; roomId?: string; [field: string]: unknown };

declare class Emitter<Events> {
  on<K extends keyof Events>(type: K, handler: (event: Events[K]) => void): () => void;
  on(type: string, handler: (event: UnknownEvent) => void): () => void;
  off<K extends keyof Events>(type: K, handler: (event: Events[K]) => void): void;
  off(type: string, handler: (event: UnknownEvent) => void): void;
  once<K extends keyof Events>(
    type: K,
    options?: { timeout?: number; filter?: (event: Events[K]) => boolean },
  ): Promise<Events[K]>;
  once(
    type: string,
    options?: { timeout?: number; filter?: (event: UnknownEvent) => boolean },
  ): Promise<UnknownEvent>;
}

export interface SignalingOptions {
  WebSocket?: WebSocketConstructor;
  /** Milliseconds a request waits for its answer (10 000). */
  timeout?: number;
  /** Reconnect when the connection drops (true). */
  reconnect?: boolean;
  /** First reconnect delay ceiling, ms (500); doubles per attempt, and starts again from
   * here once a connection stayed open for maxDelay or joined its rooms again. */
  minDelay?: number;
  /** Largest reconnect delay ceiling, ms (15 000); after a flood close (1008) the next
   * attempt waits this ceiling at once. */
  maxDelay?: number;
  /** Random source of the jitter (Math.random). */
  random?: () => number;
  /** Messages that may wait while the socket is not open (100): beyond it a request or
   * notify rejects with `queue_full`, a sendRaw emits an `error` event with that code. */
  maxQueue?: number;
  /** Bytes (UTF-8 frames) that may wait while the socket is not open (1 MiB), likewise. */
  maxQueueBytes?: number;
}

export interface JoinOptions {
  name?: string;
  role?: Role;
  /** The room's owner token (role "host"), or a private room's viewer token. */
  token?: string | null;
  /** A stage guest on a new connection: its stage publish token, to take its place again. */
  stageToken?: string | null;
}

export declare class SignalingClient extends Emitter<ClientEvents> {
  constructor(url: string, options?: SignalingOptions);
  readonly url: string;
  readonly connected: boolean;
  /** This connection's peer id (changes on reconnect). */
  peerId: string | null;
  readonly rooms: Map<string, RoomHandle>;
  /** Resolves once the socket is open; rejects with `closed` if close() comes first, and with
   * `disconnected` once the socket is gone with `reconnect: false` (no attempt follows). */
  opened(): Promise<void>;
  /** Send with a fresh request id; resolves with the answering event, rejects with its error. */
  request<T = ServerEvent>(
    message: Record<string, unknown> & { type: string },
    options?: { timeout?: number; expect?: (event: ServerEvent) => boolean; id?: string | number },
  ): Promise<T>;
  /** Send with a fresh request id a message livehub does not answer on success; resolves
   * with that id once sent (a refusal: an `error` event carrying it). */
  notify(message: Record<string, unknown> & { type: string }): Promise<number>;
  sendRaw(message: Record<string, unknown>): void;
  /** Join (or join again: the same handle, its stage token kept unless given). */
  join(roomId: string, options?: JoinOptions): Promise<RoomHandle>;
  close(): void;
}

export declare class RoomHandle extends Emitter<RoomEvents> {
  readonly client: SignalingClient;
  readonly roomId: string;
  /** The last joined event, without its id. */
  readonly data: JoinedEvent;
  readonly peerId: string;
  readonly role: Role;
  /** The room, kept up to date from `room-status` and `stage`. */
  readonly room: Room;
  readonly viewerCount: number;
  readonly presence: "full" | "counted";
  /** By peer id, from joined, peer-joined, peer-left, presence-mode; in a counted room the
   * hosts and this member only. */
  members: Map<string, Member>;
  left: boolean;
  chat(text: string): Promise<ChatEvent>;
  send(to: string | null, type: "offer" | "answer" | "candidate" | string, payload: unknown): void;
  kick(peerId: string): Promise<PeerLeftEvent>;
  close(): Promise<RoomStatusEvent>;
  /** Leave the room; a handle that is done (kicked, lost, left) resolves at once and sends
   * nothing (the room joined again since, on a new handle, stays joined). */
  leave(): Promise<void>;
  /** This member's stage publish token while it is a guest (kept for rejoins), else null. */
  readonly stageToken: string | null;
  /** Host: invite a member on stage (not answered: resolves with the request id once sent). */
  inviteToStage(peerId: string): Promise<number>;
  /** Accept this member's invitation: resolves with its publish credentials. */
  acceptStage(): Promise<StageCredentialsEvent>;
  /** Decline this member's invitation (not answered: resolves with the request id). */
  declineStage(): Promise<number>;
  /** Host: take a guest off the stage or withdraw its invitation (resolves with the request id). */
  removeFromStage(peerId: string): Promise<number>;
  /** A guest leaves the stage: resolves with the stage-removed naming it. */
  leaveStage(): Promise<StageRemovedEvent>;
  /** Host: delete a chat line for everyone: resolves with chat-deleted. */
  deleteChat(chatId: string): Promise<ChatDeletedEvent>;
  /** Host: mute a member's chat for `seconds` (default 300; resolves with the request id). */
  mute(peerId: string, seconds?: number): Promise<number>;
  /** Host: end a member's mute (resolves with the request id). */
  unmute(peerId: string): Promise<number>;
  /** Host: slow mode, seconds between a non-host's lines (0 = off): resolves with room-settings. */
  setSlowMode(seconds: number): Promise<RoomSettingsEvent>;
}

// -- WHEP ------------------------------------------------------------------------------------

export interface WhepOptions {
  RTCPeerConnection?: typeof RTCPeerConnection;
  MediaStream?: typeof MediaStream;
  fetch?: FetchLike;
  configuration?: RTCConfiguration;
  /** Milliseconds to wait for ICE gathering before sending the offer (2000). */
  iceGatheringTimeout?: number;
}

/** Play with WHEP; `stop()` closes the connection and DELETEs the WHEP session. */
export declare function playWhep(
  whepUrl: string,
  options?: WhepOptions,
): Promise<{ pc: RTCPeerConnection; stream: MediaStream | null; stop(): void }>;

/** Publish with WHIP; `stop()` closes the connection and DELETEs the WHIP session. */
export declare function publishWhip(
  whipUrl: string,
  stream: MediaStream,
  options?: Omit<WhepOptions, "MediaStream">,
): Promise<{ pc: RTCPeerConnection; stop(): void }>;

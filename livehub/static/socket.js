// The room's WebSocket to livehub: joins on open, reconnects with backoff until closed on
// purpose. Messages are handed to `onMessage`; connection changes to `onState`.

import { errors } from './ui.js';

const wsUrl = () => (location.protocol === 'https:' ? 'wss' : 'ws') + '://' + location.host + '/ws';

/**
 * joinMessage(): the `join` to send on every (re)connect; onDrop(onPurpose): the socket went
 * away (onPurpose: closed by this page, no reconnect follows).
 */
export function createSocket({ joinMessage, onMessage, onState, onDrop }) {
  let ws = null;
  let closing = false; // closed on purpose: no reconnect
  let retryDelay = 1000;
  let retryTimer = null;

  function connect() {
    closing = false;
    onState('connecting', 'connecting…');
    const socket = new WebSocket(wsUrl());
    ws = socket;
    socket.onopen = () => socket.send(JSON.stringify(joinMessage()));
    socket.onmessage = (e) => {
      let msg;
      try { msg = JSON.parse(e.data); } catch { return; }
      if (ws === socket) onMessage(msg);
    };
    socket.onclose = (e) => {
      if (ws !== socket) return;
      ws = null;
      onDrop(closing);
      if (closing) return;
      onState('reconnecting', `disconnected${e.code === 1006 ? '' : ` (${e.code})`}, retrying…`);
      retryTimer = setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 10000);
    };
  }

  return {
    connect,
    /** Joined: the next drop retries quickly again. */
    joined() { retryDelay = 1000; errors.clear('ws-send'); },
    send(msg) {
      if (ws?.readyState !== WebSocket.OPEN) {
        errors.show('Not connected to livehub: the message was not sent.', 'ws-send');
        return false;
      }
      ws.send(JSON.stringify(msg));
      return true;
    },
    /** Close for good (optionally saying `leave` first). */
    close({ leave = null } = {}) {
      closing = true;
      clearTimeout(retryTimer);
      if (leave && ws?.readyState === WebSocket.OPEN) ws.send(JSON.stringify(leave));
      ws?.close(1000);
    },
  };
}

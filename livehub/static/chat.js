// The room's chat: the log (messages and system lines) and the form. One rule: chat is open
// only while this page is joined to a room that has not ended, whether the end was pushed,
// answered by a REST call, refused by the server (`room_ended`) or found on reload.
// Moderation: each line shows the sender's role and carries its server id; a host's page has a
// delete button on every line and the slow-mode setting; `chat-deleted` removes a line on
// every page, `room-settings` shows the slow mode in force.

import { h, time } from './ui.js';

const SLOW_MODES = [0, 5, 15, 30, 60, 300];

/**
 * canModerate(): whether this page is a host's. What the chat asks livehub for, room.js says
 * (through the SDK's room handle): onSend(text) -> whether it went out, onDelete(chat line id),
 * onSlowMode(seconds).
 */
export function createChat({ myPeerId, canModerate = () => false, onSend, onDelete, onSlowMode }) {
  const log = h('div', { class: 'chat-log', testid: 'chat-log' });
  // No maxlength: it counts UTF-16 units (an emoji twice), livehub counts characters, and its
  // limit is the server's setting (LIVEHUB_MAX_CHAT_LENGTH): a longer line gets its error.
  const input = h('input', { placeholder: 'Say something…', testid: 'chat-input', disabled: true, autocomplete: 'off' });
  const button = h('button', { type: 'submit', testid: 'chat-send', disabled: true }, 'Send');
  const closed = h('p', { class: 'muted chat-closed', testid: 'chat-closed', hidden: true }, 'The room has ended: chat is closed.');
  const form = h('form', { class: 'field-row', testid: 'chat-form', onsubmit: submit }, input, button);
  const slowNote = h('p', { class: 'muted slow-note', testid: 'slow-mode-note', hidden: true });
  const slowSelect = h('select', { testid: 'slow-mode-select', onchange: () => onSlowMode(Number(slowSelect.value)) },
    ...SLOW_MODES.map((n) => h('option', { value: String(n) }, n ? `one line every ${n} s` : 'off')));
  const slowControl = h('label', { class: 'slow-control', testid: 'slow-mode-control', hidden: true }, 'Slow mode ', slowSelect);
  const el = h('section', { class: 'card chat' }, h('h2', {}, 'Chat'), slowControl, slowNote, log, closed, form);
  let state = 'disconnected';
  let slowMode = 0;

  function submit(event) {
    event.preventDefault();
    if (state !== 'open') return;
    const text = input.value.trim();
    if (!text) return;
    if (onSend(text)) input.value = '';
  }

  function line(entry, ...parts) {
    const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
    log.append(h('div', entry, ...parts));
    if (nearBottom) log.scrollTop = log.scrollHeight;
  }

  return {
    el,
    /** 'open' (joined, room not ended), 'disconnected' or 'ended'. */
    setState(next) {
      state = next;
      input.disabled = next !== 'open';
      button.disabled = next !== 'open';
      closed.hidden = next !== 'ended';
      form.dataset.state = next;
      input.placeholder = next === 'ended' ? 'Chat is closed.' : 'Say something…';
    },
    say(text) {
      line({ class: 'chat-line system', testid: 'chat-system' }, h('span', { class: 'time' }, time(Date.now())), ' ', text);
    },
    message(msg) {
      const mine = msg.from && msg.from === myPeerId();
      const id = typeof msg.id === 'string' ? msg.id : '';
      const remove = canModerate() && id
        ? h('button', { type: 'button', class: 'small secondary chat-delete', testid: 'chat-delete', title: 'Delete for everyone', dataset: { chatId: id }, onclick: () => onDelete(id) }, 'Delete')
        : null;
      line({ class: `chat-line${mine ? ' mine' : ''}`, testid: 'chat-message', dataset: { from: msg.from ?? '', chatId: id, role: msg.role ?? '' } },
        h('span', { class: 'time' }, time(msg.ts ?? Date.now())), ' ',
        h('b', { class: 'chat-name' }, msg.name || msg.from || '?'), ' ',
        msg.role === 'host' ? h('span', { class: 'tag' }, 'host') : null, msg.role === 'host' ? ' ' : null,
        h('span', { class: 'chat-text' }, msg.text), remove ? ' ' : null, remove);
    },
    /** chat-deleted: the line goes, on every page. */
    deleted(id) {
      for (const entry of log.querySelectorAll('[data-testid="chat-message"]')) {
        if (entry.dataset.chatId === id) entry.remove();
      }
    },
    /** The room's slow mode (seconds, 0 = off): from `joined` and `room-settings`. */
    setSlowMode(seconds) {
      slowMode = Number(seconds) || 0;
      slowSelect.value = SLOW_MODES.includes(slowMode) ? String(slowMode) : slowSelect.value;
      slowNote.hidden = !slowMode;
      slowNote.textContent = slowMode ? `Slow mode: one line every ${slowMode} s${canModerate() ? ' (not for hosts)' : ''}.` : '';
      slowControl.hidden = !canModerate();
    },
    /** Show or hide the host controls (after `joined` says the role). */
    renderControls() {
      slowControl.hidden = !canModerate();
      this.setSlowMode(slowMode);
    },
  };
}

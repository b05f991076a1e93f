// The room's chat: the log (messages and system lines) and the form. One rule: chat is open
// only while this page is joined to a room that has not ended, whether the end was pushed,
// answered by a REST call, refused by the server (`room_ended`) or found on reload.

import { h, time } from './ui.js';

export function createChat({ send, myPeerId }) {
  const log = h('div', { class: 'chat-log', testid: 'chat-log' });
  const input = h('input', { maxLength: 500, placeholder: 'Say something…', testid: 'chat-input', disabled: true, autocomplete: 'off' });
  const button = h('button', { type: 'submit', testid: 'chat-send', disabled: true }, 'Send');
  const closed = h('p', { class: 'muted chat-closed', testid: 'chat-closed', hidden: true }, 'The room has ended: chat is closed.');
  const form = h('form', { class: 'field-row', testid: 'chat-form', onsubmit: submit }, input, button);
  const el = h('section', { class: 'card chat' }, h('h2', {}, 'Chat'), log, closed, form);
  let state = 'disconnected';

  function submit(event) {
    event.preventDefault();
    if (state !== 'open') return;
    const text = input.value.trim();
    if (!text) return;
    if (send({ type: 'chat', text })) input.value = '';
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
      line({ class: `chat-line${mine ? ' mine' : ''}`, testid: 'chat-message', dataset: { from: msg.from ?? '' } },
        h('span', { class: 'time' }, time(msg.ts ?? Date.now())), ' ',
        h('b', { class: 'chat-name' }, msg.name || msg.from || '?'), ' ',
        h('span', { class: 'chat-text' }, msg.text));
    },
  };
}

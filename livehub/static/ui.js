// DOM helpers shared by every view: element builder, status badge, copy fields, error banner.

/** h('div', {class: 'x', testid: 'y', onclick: f}, child, 'text', ...) */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'testid') el.dataset.testid = value;
    else if (key === 'class') el.className = value;
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on')) el.addEventListener(key.slice(2), value);
    else if (key in el) el[key] = value;
    else el.setAttribute(key, value === true ? '' : value);
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

export const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : '');

/** "1 viewer", "2 viewers", "0 viewers". */
export const plural = (n, one, many = `${one}s`) => (Number(n) === 1 ? one : many);

/** A count and its unit, kept in two spans so tests (and people) can read the number alone. */
export function countStat(unit, testid) {
  const value = h('span', { testid }, '0');
  const label = h('em', { class: 'unit', testid: `${testid}-unit` }, plural(0, unit));
  const el = h('span', { class: 'stat' }, value, ' ', label);
  return {
    el,
    set(n) {
      value.textContent = String(n ?? 0);
      label.textContent = plural(n ?? 0, unit);
    },
  };
}

export function statusBadge(status = 'unknown', reconnecting = false) {
  const text = reconnecting && status === 'live' ? 'live · reconnecting' : status;
  return h('span', { class: `badge badge-${status}`, testid: 'status-badge', dataset: { status } }, text);
}

export function updateBadge(el, room) {
  const fresh = statusBadge(room.status, room.reconnecting);
  if (el.dataset.status !== fresh.dataset.status || el.textContent !== fresh.textContent) {
    el.className = fresh.className;
    el.dataset.status = fresh.dataset.status;
    el.textContent = fresh.textContent;
  }
}

async function copyText(text, button) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // navigator.clipboard needs a secure context; fall back to the old way.
    const area = h('textarea', { value: text, readOnly: true, class: 'offscreen' });
    document.body.append(area);
    area.select();
    const ok = document.execCommand('copy');
    area.remove();
    if (!ok) {
      errors.show('Copy failed: select the text and copy it by hand.', 'copy');
      return;
    }
  }
  const label = button.textContent;
  button.textContent = 'Copied';
  setTimeout(() => { button.textContent = label; }, 1500);
}

export function copyField(label, value, testid, { secret = false } = {}) {
  const input = h('input', { value, readOnly: true, testid: `field-${testid}`, spellcheck: false });
  input.addEventListener('focus', () => input.select());
  return h('div', { class: `field${secret ? ' secret' : ''}` },
    h('label', {}, label),
    h('div', { class: 'field-row' },
      input,
      h('button', { type: 'button', class: 'copy', testid: `copy-${testid}`, onclick: (e) => copyText(value, e.currentTarget) }, 'Copy')));
}

/** The error banner under the top bar; one message per key. */
export const errors = {
  el: document.getElementById('errors'),
  items: new Map(),
  /** Show a message; a later message with the same key replaces it. */
  show(message, key = message) {
    this.items.get(key)?.remove();
    const item = h('div', { class: 'error-item', testid: 'error-message' },
      h('span', {}, message),
      h('button', { type: 'button', class: 'dismiss', title: 'Dismiss', onclick: () => this.clear(key) }, '×'));
    this.items.set(key, item);
    this.el.append(item);
    this.el.hidden = false;
  },
  clear(key) {
    this.items.get(key)?.remove();
    this.items.delete(key);
    this.el.hidden = this.items.size === 0;
  },
  clearAll() {
    for (const key of [...this.items.keys()]) this.clear(key);
  },
};

// The member panel. Up to the server's presence limit a room is in "full" presence: `joined`
// lists everyone and peer-joined / peer-left keep the list. Above it ("counted") viewers are
// counted, not announced: the panel lists the hosts (always announced) and this page, and shows
// the exact number of viewers (`viewer-count` counts every member: the listed hosts are taken
// off) instead of their names. Back under the limit, `presence-mode` "full" brings the whole
// list again.

import { h, plural } from './ui.js';

/**
 * myPeerId(): this page's peer; host actions, shown only on a host's page (isHost()):
 * stage: {status(peerId) -> 'guest' | 'invited' | null, invite(peerId), remove(peerId)},
 * moderation: {muted(peerId), mute(peerId), unmute(peerId)}.
 */
export function createMembers({ myPeerId, isHost: pageIsHost, stage, moderation }) {
  const members = new Map(); // peerId -> {peerId, name, role}
  const list = h('ul', { class: 'members', testid: 'member-list' });
  const summary = h('p', { class: 'member-summary muted', testid: 'member-summary', hidden: true });
  const el = h('section', { class: 'card', testid: 'member-panel' }, h('h2', {}, 'Members'), list, summary);
  let presence = 'full';
  let viewerCount = 0;
  let wasCounted = false;

  const isHost = (m) => m.role === 'host';
  const kept = (m) => presence === 'full' || isHost(m) || m.peerId === myPeerId();

  function render() {
    const me = myPeerId();
    const sorted = [...members.values()].sort((a, b) => (a.peerId === me ? -1 : b.peerId === me ? 1 : 0));
    const host = pageIsHost();
    list.replaceChildren(...sorted.map((m) => {
      const self = m.peerId === me;
      const onStage = stage.status(m.peerId);
      const controls = [];
      if (host && !self) {
        const data = { peerId: m.peerId };
        if (onStage === 'guest') controls.push(h('button', { type: 'button', class: 'small danger', testid: 'stage-remove', dataset: data, onclick: () => stage.remove(m.peerId) }, 'Remove from stage'));
        else if (onStage === 'invited') controls.push(h('button', { type: 'button', class: 'small', testid: 'stage-invited', dataset: data, disabled: true }, 'Invited…'));
        else if (!isHost(m)) controls.push(h('button', { type: 'button', class: 'small', testid: 'stage-invite', dataset: data, onclick: () => stage.invite(m.peerId) }, 'Invite to stage'));
        if (!isHost(m)) {
          controls.push(moderation.muted(m.peerId)
            ? h('button', { type: 'button', class: 'small secondary', testid: 'unmute-button', dataset: data, onclick: () => moderation.unmute(m.peerId) }, 'Unmute')
            : h('button', { type: 'button', class: 'small secondary', testid: 'mute-button', dataset: data, onclick: () => moderation.mute(m.peerId) }, 'Mute 5 min'));
        }
      }
      return h('li', { testid: 'member-item', dataset: { peerId: m.peerId, role: m.role ?? '', stage: onStage ?? '' }, class: self ? 'self' : '' },
        h('span', { class: 'member-name', testid: 'member-name' }, m.name || m.peerId),
        isHost(m) ? h('span', { class: 'tag' }, 'host') : null,
        onStage === 'guest' ? h('span', { class: 'tag stage-tag' }, 'on stage') : null,
        self ? h('span', { class: 'muted' }, ' (you)') : null,
        controls.length ? h('span', { class: 'member-actions' }, ...controls) : null);
    }));
    el.dataset.presence = presence;
    summary.dataset.presence = presence;
    if (presence === 'counted') {
      // every member is counted, hosts too; hosts are always listed, so they are known
      const hosts = [...members.values()].filter(isHost).length;
      const viewers = Math.max(viewerCount - hosts, 0);
      summary.hidden = false;
      summary.textContent = `${viewers} ${plural(viewers, 'viewer')}`
        + (hosts ? ` and ${hosts} ${plural(hosts, 'host')}` : '')
        + ' in this room: too many to list, only hosts are shown.';
    } else {
      // Back below the limit from a server that did not send the members again: viewers who
      // came while counted were never announced.
      const unlisted = wasCounted ? viewerCount - members.size : 0;
      summary.hidden = unlisted <= 0;
      summary.textContent = `and ${unlisted} more not listed`;
    }
  }

  return {
    el,
    render,
    get presence() { return presence; },
    name: (peerId) => members.get(peerId)?.name || peerId,
    /** The member's role as the server announced it, or null for a member not listed. */
    role: (peerId) => members.get(peerId)?.role ?? null,
    /** From `joined`: the list, the mode and the exact count. */
    reset({ list: given = [], mode = 'full', count = 0, self }) {
      members.clear();
      presence = mode === 'counted' ? 'counted' : 'full';
      wasCounted = presence === 'counted';
      viewerCount = count;
      for (const m of given) if (kept(m)) members.set(m.peerId, m);
      if (self && !members.has(self.peerId)) members.set(self.peerId, self);
      render();
    },
    clear() {
      members.clear();
      render();
    },
    /** peer-joined: answers whether the peer is shown (viewers are not, above the limit). */
    add(peer) {
      if (!kept(peer)) return false;
      members.set(peer.peerId, peer);
      render();
      return true;
    },
    remove(peerId) {
      const had = members.delete(peerId);
      render();
      return had;
    },
    /** presence-mode: to counted (viewers dropped from the list), or back to full with
     * `list`, every member (then the list is complete again). */
    setPresence(mode, list) {
      presence = mode === 'counted' ? 'counted' : 'full';
      if (presence === 'counted') {
        wasCounted = true;
        for (const [id, m] of members) if (!kept(m)) members.delete(id);
      } else if (Array.isArray(list)) {
        const me = members.get(myPeerId());
        members.clear();
        for (const m of list) members.set(m.peerId, m);
        if (me && !members.has(me.peerId)) members.set(me.peerId, me);
        wasCounted = false;
      }
      render();
    },
    setViewerCount(n) {
      viewerCount = n ?? 0;
      render();
    },
  };
}

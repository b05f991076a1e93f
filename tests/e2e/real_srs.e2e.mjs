// The console's stage against a REAL SRS (shared/srs, WebRTC on 127.0.0.1) in headless
// Chromium: the host goes live from its (fake) camera over WHIP, invites a member, the member
// accepts and publishes its camera over WHIP with its own stage credentials (SRS asks livehub
// with on_publish), and a viewer's page plays both streams from SRS over WHEP.
// Driven by test_console_real_srs.py, which starts livehub and SRS; prints a JSON report.

import { chromium } from 'playwright-core';

const BASE = process.env.LIVEHUB_URL.replace(/\/$/, '');
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const T = 20_000;
const FLAGS = [
  '--no-sandbox', '--disable-gpu',
  '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
  '--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--no-first-run', '--disable-quic', '--disable-background-timer-throttling',
  '--disable-renderer-backgrounding', '--disable-backgrounding-occluded-windows',
];
const tid = (id, extra = '') => `[data-testid="${id}"]${extra}`;
const log = (...args) => console.error('[real-srs]', ...args);
const pageErrors = [];

async function newPage(browser, name) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  await context.addInitScript((n) => {
    localStorage.setItem('livehub.name', n);
    window.__gum = 0;
    const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
    navigator.mediaDevices.getUserMedia = (c) => { window.__gum += 1; return gum(c); };
  }, name);
  const page = await context.newPage();
  page.on('pageerror', (err) => pageErrors.push(`${name}: ${err.message}`));
  page.on('console', (msg) => { if (msg.type() === 'error') log(`${name} console.error: ${msg.text()}`); });
  return page;
}

async function frames(page, selector, n = 5, ms = 30_000) {
  await page.waitForSelector(selector, { timeout: T });
  return page.$eval(selector, (video, { n, ms }) => new Promise((resolve, reject) => {
    let count = 0;
    const timer = setTimeout(() => reject(new Error(`only ${count} frames in ${ms} ms (videoWidth ${video.videoWidth})`)), ms);
    const step = () => {
      count += 1;
      if (count >= n && video.videoWidth > 0) { clearTimeout(timer); resolve({ frames: count, width: video.videoWidth }); }
      else video.requestVideoFrameCallback(step);
    };
    video.requestVideoFrameCallback(step);
  }), { n, ms });
}

async function memberPeer(page, name) {
  const handle = await page.waitForFunction((n) => [...document.querySelectorAll('[data-testid="member-item"]')]
    .find((li) => li.querySelector('[data-testid="member-name"]').textContent === n)?.dataset.peerId, name, { timeout: T });
  return handle.jsonValue();
}

const report = { ok: false };
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS });
try {
  const alice = await newPage(browser, 'alice');
  const gus = await newPage(browser, 'gus');
  const carol = await newPage(browser, 'carol');
  await alice.goto(`${BASE}/#/`);
  await alice.fill(tid('create-title'), 'Real SRS stage');
  await alice.click(tid('create-submit'));
  await alice.click(tid('created-room-link'));
  const roomId = await alice.getAttribute(tid('room-page'), 'data-room-id');
  for (const page of [gus, carol]) await page.goto(`${BASE}/#/room/${encodeURIComponent(roomId)}`);
  const gusPeer = await memberPeer(alice, 'gus');
  await memberPeer(alice, 'carol');
  // the main stream: the owner's camera over WHIP to SRS
  await alice.click(tid('go-live-button'));
  await carol.waitForSelector(`${tid('status-badge')}[data-status="live"]`, { timeout: T });
  report.main = await frames(carol, tid('player-video'));
  // the invitation: no camera on gus's page until he accepts
  await alice.click(`${tid('stage-invite')}[data-peer-id="${gusPeer}"]`);
  await gus.waitForSelector(tid('stage-prompt'), { timeout: T });
  report.gumBeforeAccept = await gus.evaluate(() => window.__gum);
  await gus.click(tid('stage-accept'));
  // gus's camera goes to SRS with his stage credentials; carol and alice play it from SRS
  report.guestAtCarol = await frames(carol, `${tid('guest-video')}[data-peer-id="${gusPeer}"]`);
  report.guestAtAlice = await frames(alice, `${tid('guest-video')}[data-peer-id="${gusPeer}"]`);
  report.gumAfterAccept = await gus.evaluate(() => window.__gum);
  const view = await (await fetch(`${BASE}/api/rooms/${roomId}`)).json();
  report.stage = view.stage.map((g) => ({ peerId: g.peerId, live: g.live }));
  report.gusPeer = gusPeer;
  // removed by the host: gone from carol's grid, and SRS dropped the stream
  await alice.click(`${tid('stage-remove')}[data-peer-id="${gusPeer}"]`);
  await carol.waitForSelector(`${tid('guest-tile')}[data-peer-id="${gusPeer}"]`, { state: 'detached', timeout: T });
  report.ok = true;
} catch (err) {
  report.error = String(err?.stack ?? err);
} finally {
  report.pageErrors = pageErrors;
  await browser.close();
}
console.log(JSON.stringify(report));

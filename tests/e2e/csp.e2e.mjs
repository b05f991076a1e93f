// The console under its Content-Security-Policy, in real headless Chromium (tests/e2e/test_csp.py).
//
// Opens the lobby and a live room's page (whose player calls WHEP on the SRS origin of the room's
// play URLs) and records every `securitypolicyviolation`; then checks the policy is enforced: a
// fetch to another origin, an injected inline script and a frame of the console are refused.
// Environment: LIVEHUB_URL, INTERNAL_URL (the hooks' port), LIVEHUB_HOOK_SECRET, HOOKS_DIR,
// CHROMIUM. Prints one JSON object on stdout.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const BASE = process.env.LIVEHUB_URL.replace(/\/$/, '');
const INTERNAL = process.env.INTERNAL_URL.replace(/\/$/, '');
const SECRET = process.env.LIVEHUB_HOOK_SECRET;
const HOOKS = process.env.HOOKS_DIR;
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const log = (...args) => console.error('[csp]', ...args);

async function json(method, url, body) {
  const res = await fetch(url, {
    method, headers: body ? { 'Content-Type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined,
  });
  return { status: res.status, body: await res.json() };
}

const EVIL = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>';
const EVIL_NAME = '<img src=x onerror="window.__xss=3">'; // names: at most 64 characters

/** What each page made of EVIL: the texts shown, elements injected, whether anything ran. */
async function hostileText(context) {
  const report = {};
  const title = `t ${EVIL}`;
  const room = (await json('POST', `${BASE}/api/rooms`, { title })).body;
  report.created = room.title === title;
  const inspect = (page) => page.evaluate(() => ({
    injected: document.querySelectorAll('body img, body svg, body script, body iframe').length,
    ran: window.__xss ?? null,
    violations: window.__violations.map((v) => v.directive),
  }));

  const lobby = await context.newPage();
  await lobby.goto(`${BASE}/`);
  const row = `[data-testid="room-row"][data-room-id="${room.id}"] [data-testid="room-link"]`;
  await lobby.waitForSelector(row, { timeout: 10_000 });
  report.lobby = { title: await lobby.textContent(row), ...(await inspect(lobby)) };

  const host = await context.newPage();
  await host.goto(`${BASE}/#/room/${room.id}`);
  await host.waitForFunction((t) => document.querySelector('[data-testid="room-title"]')?.textContent === t, title, { timeout: 10_000 });
  await host.waitForSelector('[data-testid="ws-state"][data-state="joined"]', { timeout: 10_000 });
  // another member, named and chatting in markup, through the SDK the console uses
  const other = await context.newPage();
  await other.goto(`${BASE}/`);
  await other.evaluate(async ({ roomId, evil, name }) => {
    const { Livehub } = await import('/sdk/livehub-client.js');
    const client = new Livehub().connect();
    const handle = await client.join(roomId, { name });
    await handle.chat(evil);
  }, { roomId: room.id, evil: EVIL, name: EVIL_NAME });
  await host.waitForSelector('[data-testid="chat-message"] .chat-text', { timeout: 10_000 });
  report.room = {
    title: await host.textContent('[data-testid="room-title"]'),
    documentTitle: await host.title(),
    chatName: await host.textContent('[data-testid="chat-message"] .chat-name'),
    chatText: await host.textContent('[data-testid="chat-message"] .chat-text'),
    members: await host.$$eval('[data-testid="member-name"]', (els) => els.map((e) => e.textContent)),
    ...(await inspect(host)),
  };

  const missing = await context.newPage();
  await missing.goto(`${BASE}/#/room/${encodeURIComponent(EVIL)}`);
  await missing.waitForSelector('[data-testid="room-not-found"]', { timeout: 10_000 });
  report.notFound = {
    text: await missing.textContent('[data-testid="room-not-found"]'),
    errors: await missing.textContent('[data-testid="error-banner"]'),
    ...(await inspect(missing)),
  };
  report.evil = EVIL;
  report.evilName = EVIL_NAME;
  for (const page of [lobby, host, other, missing]) await page.close();
  return report;
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--no-sandbox', '--disable-gpu', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream'],
});
const out = { violations: [], consoleErrors: [], pageErrors: [] };
try {
  const context = await browser.newContext();
  await context.addInitScript(() => {
    window.__violations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__violations.push({ directive: e.effectiveDirective, blocked: e.blockedURI });
    });
  });
  const page = await context.newPage();
  page.on('console', (msg) => { if (msg.type() === 'error') out.consoleErrors.push(msg.text()); });
  page.on('pageerror', (err) => out.pageErrors.push(err.message));

  // the lobby, then a live room: its player asks SRS (WHEP) for the stream
  await page.goto(`${BASE}/`);
  await page.waitForSelector('[data-testid="create-title"]', { timeout: 10_000 });
  const room = (await json('POST', `${BASE}/api/rooms`, { title: 'csp' })).body;
  const hook = { ...JSON.parse(await readFile(join(HOOKS, 'on_publish.json'), 'utf8')),
    app: 'live', stream: room.streamKey, stream_url: `/live/${room.streamKey}`, param: `?secret=${room.publish.token}` };
  const published = await json('POST', `${INTERNAL}/api/hooks/srs?secret=${SECRET}`, hook);
  if (published.body.code !== 0) throw new Error(`publish hook refused: ${JSON.stringify(published)}`);
  await page.goto(`${BASE}/#/room/${room.id}`);
  await page.waitForSelector('video', { timeout: 10_000 });
  const whep = page.waitForRequest((req) => req.url().startsWith(room.playUrls.whep.split('?')[0]), { timeout: 10_000 });
  out.whepRequested = await whep.then(() => true, () => false);
  await page.waitForTimeout(1000);
  out.renderedTitle = await page.textContent('body').then((text) => text.includes('csp'));
  out.violations = await page.evaluate(() => window.__violations.slice());
  out.consoleErrors = out.consoleErrors.slice(); // what the console itself caused (a copy)
  page.removeAllListeners('console');

  // the policy is enforced: another origin, an inline script
  await page.evaluate(() => fetch('http://127.0.0.1:9/elsewhere').catch(() => {}));
  // an inline script: Trusted Types refuses its text first (a TypeError), script-src would too
  out.inlineTextRefused = await page.evaluate(() => {
    const s = document.createElement('script');
    try {
      s.textContent = 'window.__inline = 1';
    } catch (err) {
      if (!(err instanceof TypeError)) throw err;
      s.append(document.createTextNode('window.__inline = 1')); // around the setter
      document.body.append(s);
      return true;
    }
    document.body.append(s);
    return false;
  });
  await page.waitForTimeout(300);
  // Trusted Types: markup from a string is refused outright (the console never does it)
  const innerHtmlRefused = await page.evaluate(() => {
    try {
      document.body.insertAdjacentHTML('beforeend', '<img src=x data-tt="1">');
      return false;
    } catch (err) {
      return err instanceof TypeError && !document.querySelector('[data-tt]');
    }
  });
  out.enforced = await page.evaluate(() => ({
    violations: window.__violations.slice(), inlineRan: window.__inline === 1,
  }));
  out.enforced.innerHtmlRefused = innerHtmlRefused;
  out.enforced.inlineTextRefused = out.inlineTextRefused;

  // framing: a page of another origin cannot embed the console
  const framer = await context.newPage();
  const frameErrors = [];
  framer.on('console', (msg) => frameErrors.push(msg.text()));
  await framer.setContent(`<iframe id="f" src="${BASE}/"></iframe>`);
  await framer.waitForTimeout(1500);
  const frame = framer.frames().find((f) => f !== framer.mainFrame());
  out.framedLoaded = frame ? await frame.evaluate(() => !!document.querySelector('main')).catch(() => false) : false;
  out.frameErrors = frameErrors;
  // the same page as a file under /static (its scripts are absolute paths: it runs whole there)
  const framer2 = await context.newPage();
  await framer2.setContent(`<iframe id="f" src="${BASE}/static/index.html#/"></iframe>`);
  await framer2.waitForTimeout(1500);
  const frame2 = framer2.frames().find((f) => f !== framer2.mainFrame());
  out.framedStaticLoaded = frame2 ? await frame2.evaluate(() => !!document.querySelector('main')).catch(() => false) : false;

  // hostile text: a room title, a display name, a chat line and a room id in the URL that are
  // markup render as text, and nothing of them runs or becomes an element
  out.xss = await hostileText(context);
} finally {
  await browser.close();
}
log(JSON.stringify(out));
console.log(JSON.stringify(out));

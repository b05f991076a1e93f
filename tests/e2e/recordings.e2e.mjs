// The page of an ended room plays its recordings (livehub/static/recordings.js), in headless
// Chromium. Run by tests/e2e/test_recordings_page.py with LIVEHUB_URL and ROOM_ID (an ended room
// with recordings); prints {"count", "captions", "duration", "seeked", "errors"} as JSON. With
// RECORDINGS_FAIL=<HTTP status> the list answers that error: prints {"messages", "errors"}.

import { chromium } from 'playwright-core';

const BASE = process.env.LIVEHUB_URL.replace(/\/$/, '');
const ROOM = process.env.ROOM_ID;
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ['--no-sandbox'] });
const errors = [];
try {
  const page = await browser.newPage();
  page.on('pageerror', (err) => errors.push(err.message));
  if (process.env.RECORDINGS_FAIL) {
    // the list answers an error, as livehub does when its database is unreachable: the page
    // says so (the error banner) instead of showing no recordings and nothing else
    await page.route('**/api/rooms/*/recordings', (route) => route.fulfill({
      status: Number(process.env.RECORDINGS_FAIL),
      contentType: 'application/json',
      body: JSON.stringify({ error: 'Database unavailable', code: 'database_unavailable', details: null }),
    }));
    await page.goto(`${BASE}/#/room/${ROOM}`);
    await page.waitForSelector('[data-testid="chat-closed"]:not([hidden])', { timeout: 15_000 });
    const banner = page.locator('[data-testid="error-message"]', { hasText: 'recordings' });
    await banner.first().waitFor({ timeout: 5_000 }).catch(() => {});
    const messages = await page.locator('[data-testid="error-message"]').allTextContents();
    console.log(JSON.stringify({ messages, errors }));
  } else {
    await plays(page);
  }
} finally {
  await browser.close();
}

/** The recordings are listed, and the first one plays and seeks. */
async function plays(page) {
  await page.goto(`${BASE}/#/room/${ROOM}`);
  await page.waitForSelector('[data-testid="recording"] video', { timeout: 15_000 });
  const figures = page.locator('[data-testid="recording"]');
  const count = await figures.count();
  const captions = await page.locator('[data-testid="recording"] figcaption').allTextContents();
  // the first recording's metadata, then a seek (a range request livehub answers with 206)
  const { duration, seeked } = await page.locator('[data-testid="recording"] video').first().evaluate(
    (video) => new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no metadata: ${video.error?.message}`)), 10_000);
      const seek = () => {
        video.addEventListener('seeked', () => {
          clearTimeout(timer);
          resolve({ duration: video.duration, seeked: video.currentTime });
        }, { once: true });
        video.currentTime = 2;
      };
      if (video.readyState >= 1) seek();
      else video.addEventListener('loadedmetadata', seek, { once: true });
    }),
  );
  console.log(JSON.stringify({ count, captions, duration, seeked, errors }));
}

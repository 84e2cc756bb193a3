// Drives the operator board in a real browser (Debian's chromium through playwright-core), for
// tests/it/board.rs. Environment:
//   BOARD_URL    the producer's base URL (the board is at BOARD_URL/board)
//   API_TOKEN    a token the producer accepts
//   DEAD_QUEUE   the queue of the dead letter to retry, DEAD_ID its id (an order id)
//   HOSTILE_ID   the id of another dead letter whose order id is an HTML payload
//   SCREENSHOT   where to save a screenshot of the board
//   HEALTH_SCREENSHOT  where to save a screenshot of the health verdict on top (optional)
// Prints one JSON line with what it saw; exits non-zero (with the reason) on any failure.
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env('BOARD_URL');
const token = env('API_TOKEN');
const deadQueue = env('DEAD_QUEUE');
const deadId = env('DEAD_ID');
const hostileId = env('HOSTILE_ID');
const screenshot = env('SCREENSHOT');
const TIMEOUT = 30_000;

const problems = [];
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: ['--no-sandbox'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  // The token must never travel in a URL; no script from a dead letter may run; the CSP must
  // not have to block anything the board itself does.
  page.on('request', (request) => {
    if (request.url().includes(token)) problems.push(`token in a URL: ${request.url()}`);
  });
  page.on('dialog', async (dialog) => {
    problems.push(`unexpected dialog: ${dialog.message()}`);
    await dialog.dismiss();
  });
  page.on('console', (message) => {
    const expected =
      (message.location().url || '').endsWith('/favicon.ico') || /status of 401/.test(message.text());
    if (message.type() === 'error' && !expected) {
      problems.push(`console error: ${message.text()}`);
    }
  });
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));

  const response = await page.goto(`${base}/board`);
  const csp = response.headers()['content-security-policy'] || '';
  if (!csp.includes("default-src 'none'") || !csp.includes("script-src 'self'")) {
    problems.push(`weak or missing CSP: ${csp}`);
  }

  // A wrong token: the API answers 401, the board says so and shows nothing.
  await page.fill('#token', 'not-the-token-0000000000000000');
  await page.click('#login-form button[type=submit]');
  await page.waitForFunction(() => /401/.test(document.getElementById('login-error').textContent));
  const leaked = await page.evaluate(() => ({
    boardHidden: document.getElementById('board').hidden,
    rows: document.querySelectorAll('#queues tbody tr, #dead tbody tr').length,
    stored: sessionStorage.length,
  }));
  if (!leaked.boardHidden || leaked.rows !== 0 || leaked.stored !== 0) {
    problems.push(`a refused token still shows data: ${JSON.stringify(leaked)}`);
  }

  // The real token: live counts and the dead letters appear.
  await page.fill('#token', token);
  await page.click('#login-form button[type=submit]');
  const row = page.locator(`#dead tbody tr[data-queue="${deadQueue}"][data-id="${deadId}"]`);
  await row.waitFor({ state: 'visible' });
  await page.locator(`#queues tbody tr[data-queue="${deadQueue}"]`).waitFor();
  // The health verdict on top: overall, then each subsystem with its verdict and cause.
  await page.locator('#health[data-verdict] li[data-part="redis"]').waitFor();
  const health = await page.evaluate(() => ({
    verdict: document.getElementById('health-verdict').textContent,
    first: document.querySelector('main > section.card').id,
    parts: [...document.querySelectorAll('#health-parts li')].map((li) => ({
      part: li.dataset.part,
      verdict: li.querySelector('.verdict').textContent,
      cause: li.querySelector('.cause').textContent,
    })),
  }));
  if (process.env.HEALTH_SCREENSHOT) {
    await page.locator('#health').screenshot({ path: process.env.HEALTH_SCREENSHOT });
  }
  const queueDead = await page
    .locator(`#queues tbody tr[data-queue="${deadQueue}"] td`)
    .nth(4)
    .textContent();

  // The hostile order id is shown as text, never parsed as HTML.
  const hostileRow = page.locator(`#dead tbody tr[data-id="${hostileId}"]`);
  await hostileRow.waitFor({ state: 'visible' });
  const hostileText = await hostileRow.locator('td').nth(1).textContent();
  if (hostileText !== hostileId) problems.push(`hostile id shown as ${JSON.stringify(hostileText)}`);
  const injected = await page.evaluate(() => ({
    pwned: window.__pwned === 1,
    images: document.querySelectorAll('#board img').length,
  }));
  if (injected.pwned || injected.images > 0) problems.push(`HTML from a dead letter was rendered: ${JSON.stringify(injected)}`);

  // The order's timeline, from the dead letter's order link.
  await row.locator('button[data-action=order]').click();
  await page.locator('#timeline li.event-stopped').waitFor();
  const timeline = await page.locator('#timeline li').allTextContents();

  await page.screenshot({ path: screenshot, fullPage: true });

  // Its payload, redacted, on demand.
  await row.locator('button[data-action=show]').click();
  await page.locator('#dead tbody tr.payload pre').first().waitFor();
  const payload = await page.locator('#dead tbody tr.payload pre').first().textContent();

  // Retry: the row goes away, and the board says what it did.
  await row.locator('button[data-action=retry]').click();
  await row.waitFor({ state: 'detached' });
  const flash = await page.locator('#flash').textContent();
  if (!/Retried 1 dead letter/.test(flash)) problems.push(`after retry the board says: ${flash}`);
  if (page.url().includes(token)) problems.push(`token in the page URL: ${page.url()}`);

  console.log(JSON.stringify({ ok: problems.length === 0, problems, queueDead, timeline, payload, flash, health }));
} finally {
  await browser.close();
}
if (problems.length > 0) {
  console.error(problems.join('\n'));
  process.exit(1);
}

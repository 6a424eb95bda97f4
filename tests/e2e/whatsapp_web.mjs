// Links a WhatsApp Web number from the dashboard against a scripted phone: the QR appears and
// rotates live (no reload), the phone scans it (the test's Rust side, told through SCAN_FILE),
// the page turns `connected` with the number, then the number is unlinked. Exits non-zero with a
// message on the first surprise.
//
// Environment: APP_URL, PASSWORD (local admin), SCAN_FILE (created when the phone should scan),
// PHONE (the number the phone links), CHROMIUM (default /usr/bin/chromium).
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { violations } from './tour.mjs';

const env = process.env;
const step = (what) => console.log(`step: ${what}`);
const fail = (why) => {
  console.error(`FAILED: ${why}`);
  process.exit(1);
};

const browser = await chromium.launch({
  executablePath: env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const timer = setTimeout(() => fail('took more than 90 s'), 90_000);
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, locale: 'es-ES' });
  const page = await context.newPage();
  page.on('console', (m) => m.type() === 'error' && console.log(`console: ${m.text()}`));
  page.on('pageerror', (e) => fail(`page error: ${e.message}`));
  page.on('dialog', (d) => d.accept());
  page.setDefaultTimeout(30_000);

  step('sign in');
  await page.goto(env.APP_URL);
  await page.fill('#login input[name=password]', env.PASSWORD);
  await page.click('#login button[type=submit]');
  await page.waitForSelector('#kpi-sent');

  step('link a WhatsApp Web number (the default kind)');
  await page.click('a[href="#/channels"]');
  await page.fill('#new-whatsapp-web input[name=name]', 'Tienda');
  await page.click('#new-whatsapp-web button[type=submit]');
  await page.waitForSelector('.session svg.qr');
  const state = (await page.textContent('.session .session-state')).trim();
  if (state !== 'esperando al teléfono') fail(`pairing state reads "${state}"`);
  const first = await page.innerHTML('.session svg.qr');

  step('the QR rotates without a reload');
  await page.waitForFunction((before) => {
    const qr = document.querySelector('.session svg.qr');
    return qr && qr.innerHTML !== before;
  }, first, { timeout: 20_000 });

  step('axe and a screenshot of the pairing panel');
  const problems = await violations(page);
  if (problems.length) fail(`accessibility:\n${problems.join('\n')}`);
  const dir = env.SCREENSHOTS_DIR || join(tmpdir(), 'pregonero-screenshots');
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, 'es-whatsapp-web-pairing.png'), fullPage: true });

  step('the phone scans it');
  writeFileSync(env.SCAN_FILE, 'scan');
  await page.waitForSelector('.session .state-connected', { timeout: 20_000 });
  const line = await page.textContent('.session p');
  if (!line.includes(env.PHONE)) fail(`the linked number is not shown: ${line}`);
  if (await page.$('.session svg.qr')) fail('the QR is still shown once linked');

  step('unlink it');
  await page.click('.session button[type=button]');
  await page.waitForSelector('.session .state-logged_out', { timeout: 20_000 });

  clearTimeout(timer);
  await browser.close();
  console.log('ok');
} catch (e) {
  fail(e.stack || String(e));
}

// Drives Debian's Chromium through the dashboard of a running Pregonero: sign in (local password
// or Keycloak), create a read-only API key (shown once), use it, revoke it, read the audit log
// (admins), sign out. Exits non-zero with a message on the first thing that is not as expected.
//
// Environment: APP_URL, MODE (`local` or `oidc`), PASSWORD (local) or LOGIN (oidc, the
// provider's login name), CHROMIUM (default /usr/bin/chromium).
import { chromium } from 'playwright-core';

const app = process.env.APP_URL;
const mode = process.env.MODE || 'local';
const step = (what) => console.log(`step: ${what}`);
const fail = (why) => {
  console.error(`FAILED: ${why}`);
  process.exit(1);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const timer = setTimeout(() => fail('took more than 120 s'), 120_000);
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(30_000);
  page.on('pageerror', (e) => fail(`page error: ${e.message}`));
  // The dashboard asks before destructive actions (revoke, delete): say yes.
  page.on('dialog', (d) => d.accept());
  page.on('console', (m) => m.type() === 'error' && !m.text().includes('status of 4') && console.error(`console: ${m.text()}`));

  step('open the dashboard');
  await page.goto(app);
  if (mode === 'local') {
    step('sign in with the admin password');
    await page.fill('#login input[name=password]', 'wrong password');
    await page.click('#login button[type=submit]');
    await page.waitForSelector('[role=alert]:has-text("wrong user name or password")');
    await page.fill('#login input[name=password]', process.env.PASSWORD);
    await page.click('#login button[type=submit]');
  } else {
    step('sign in through the OpenID provider');
    await page.click('#sso');
    await page.waitForSelector('input[name=login]');
    await page.fill('input[name=login]', process.env.LOGIN);
    await page.fill('input[name=password]', 'any');
    await page.click('button[type=submit]');
  }
  await page.waitForSelector('#kpi-sent');
  const who = await page.textContent('#who');
  step(`signed in as ${who}; the dashboard shows this month's KPIs`);
  await page.click('a[href="#/api-keys"]');
  await page.waitForSelector('#new-key');

  step('create a read-only key');
  await page.fill('#new-key input[name=name]', 'from the browser');
  await page.uncheck('#new-key input[name=write]');
  await page.fill('#new-key input[name=days]', '30');
  await page.click('#new-key button[type=submit]');
  const token = (await page.textContent('#new-token code')).trim();
  if (!token.startsWith('prg_')) fail(`the new key looks wrong: ${token.slice(0, 4)}…`);
  const row = page.locator('tr', { hasText: 'from the browser' });
  await row.waitFor();
  if (!(await row.textContent()).includes('read')) fail('the key row does not show its scope');
  if ((await page.content()).split(token).length !== 2) fail('the key is shown more than once');

  step('use it');
  const call = (method) => fetch(`${app}/api/v1/api-keys`, {
    method,
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json' },
    body: method === 'POST' ? JSON.stringify({ name: 'x' }) : undefined,
  });
  if ((await call('GET')).status !== 200) fail('the new key cannot read');
  if ((await call('POST')).status !== 403) fail('a read-only key could write');

  step('revoke it');
  await row.locator('button', { hasText: 'Revoke' }).click();
  await page.locator('tr', { hasText: 'from the browser' }).filter({ hasText: 'revoked' }).waitFor();
  if ((await call('GET')).status !== 401) fail('a revoked key still works');

  if (who.includes('(admin)')) {
    step('read the audit log');
    await page.click('#nav-audit');
    await page.locator('#audit tr', { hasText: 'DELETE /api/v1/api-keys/{id}' }).first().waitFor();
    await page.locator('#audit tr', { hasText: 'POST /api/v1/api-keys' }).first().waitFor();
  }

  step('sign out');
  await page.click('#logout');
  if (mode === 'local') {
    await page.waitForSelector('#login');
  } else {
    // The provider's logout page confirms by itself and sends the browser back here.
    await page.waitForURL(`${app}/`);
    await page.waitForSelector('#sso');
  }
  const me = await page.evaluate(async () => (await fetch('/auth/me')).status);
  if (me !== 401) fail(`still signed in after logout (${me})`);
  console.log('ok');
} catch (e) {
  fail(e.message);
} finally {
  clearTimeout(timer);
  await browser.close();
}

// Drives Debian's Chromium through a whole WhatsApp campaign in the dashboard: connect a number
// (and point the fake Cloud API's webhook at the URL the page shows), import contacts from a CSV
// with a bad row, write a template with an image, preview it, start a campaign (one contact lacks
// a variable: the page lists them and sends to the others), and watch the counters and the
// per-recipient ledger reach `read`. Exits non-zero with a message on the first surprise.
//
// Environment: APP_URL, PASSWORD (local admin), FAKE_URL (the fake WhatsApp), WA_NUMBER,
// WA_TOKEN, WA_SECRET, CSV_PATH, IMAGE_PATH, CHROMIUM (default /usr/bin/chromium).
import { chromium } from 'playwright-core';
import { budgets, tour } from './tour.mjs';

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
const timer = setTimeout(() => fail('took more than 120 s'), 120_000);
let page;
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  page = await context.newPage();
  const liveStreams = [];
  page.on('console', (m) => m.type() === 'error' && console.log(`console: ${m.text()}`));
  page.on('response', (r) => r.status() >= 400 && console.log(`response: ${r.status()} ${r.request().method()} ${r.url()}`));
  page.on('request', (r) => r.url().endsWith('/api/v1/live') && liveStreams.push(r.url()));
  page.setDefaultTimeout(30_000);
  page.on('pageerror', (e) => fail(`page error: ${e.message}`));
  // The dashboard asks before destructive actions (revoke, delete): say yes.
  page.on('dialog', (d) => d.accept());
  const text = async (selector) => (await page.textContent(selector)).trim();

  step('sign in');
  await page.goto(env.APP_URL);
  await page.fill('#login input[name=password]', env.PASSWORD);
  await page.click('#login button[type=submit]');
  await page.waitForSelector('#kpi-sent');

  step('connect the WhatsApp number');
  await page.click('a[href="#/channels"]');
  // WhatsApp Web (by QR) is the default kind; this number is a Cloud API one.
  await page.check('input[name=kind][value=whatsapp_cloud]');
  await page.fill('#new-whatsapp input[name=name]', 'Ventas');
  await page.fill('#new-whatsapp input[name=phone_number_id]', env.WA_NUMBER);
  await page.fill('#new-whatsapp input[name=access_token]', env.WA_TOKEN);
  await page.fill('#new-whatsapp input[name=app_secret]', env.WA_SECRET);
  await page.click('#new-whatsapp button[type=submit]');
  const webhook = await text('#webhook-url');
  if (!webhook.startsWith(`${env.APP_URL}/whatsapp/webhook/`)) fail(`unexpected webhook URL ${webhook}`);
  if ((await text('#verify-token')).length < 16) fail('no verify token shown');
  await page.locator('#channels tr', { hasText: 'Ventas' }).waitFor();
  const set = await fetch(`${env.FAKE_URL}/__control/numbers`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ phone_number_id: env.WA_NUMBER, access_token: env.WA_TOKEN, app_secret: env.WA_SECRET, webhook_url: webhook }),
  });
  if (!set.ok) fail('could not point the fake at the webhook');

  step('import contacts from a CSV with a bad row, mapping two columns by hand');
  await page.click('a[href="#/contacts"]');
  await page.setInputFiles('#import input[name=file]', env.CSV_PATH);
  // The first rows are shown before anything is imported; `cliente` is not a name the server
  // knows, and `notas` should not be kept.
  await page.locator('#mapping td', { hasText: 'Ana' }).first().waitFor();
  if ((await page.inputValue('#mapping select[name=map-3]')) !== 'telefono') fail('the phone column was not recognised');
  await page.selectOption('#mapping select[name=map-0]', 'nombre');
  await page.selectOption('#mapping select[name=map-4]', 'skip');
  await page.click('#import button[type=submit]');
  await page.waitForSelector('#import-progress [data-status=completed]');
  const progress = await text('#import-progress');
  if (!progress.includes('3 imported, 1 refused')) fail(`import progress says: ${progress}`);
  await page.waitForSelector('#import-errors');
  await page.locator('#contacts tr', { hasText: '+34600000002' }).waitFor();
  if (!(await page.locator('#contacts tr', { hasText: '+34600000001' }).textContent()).includes('Ana')) fail('the mapped name column was not imported as the name');
  step('search the contacts');
  await page.fill('#contact-search', 'luis');
  await page.waitForFunction(() => document.querySelectorAll('#contacts tbody tr').length === 1);
  if (!(await text('#contacts tbody')).includes('+34600000002')) fail('the search did not find Luis');
  await page.fill('#contact-search', '');
  await page.waitForFunction(() => document.querySelectorAll('#contacts tbody tr').length === 3);

  step('write a template with an image and preview it');
  await page.click('a[href="#/templates"]');
  // The variable picker offers the contacts' attributes: the skipped column is not one.
  await page.waitForSelector('#new-template .chip');
  const chips = await page.locator('#new-template .chip').allTextContents();
  if (chips.some((c) => c.includes('notas') || c.includes('cliente'))) fail(`a skipped or renamed column was kept: ${chips.join(' ')}`);
  await page.fill('#new-template input[name=name]', 'promo');
  await page.fill('#new-template textarea[name=body]', 'Hola {{ sustantivo }} {{ nombre }}');
  await page.setInputFiles('#new-template input[name=media]', env.IMAGE_PATH);
  await page.click('#new-template button[type=submit]');
  const row = page.locator('#templates tr', { hasText: 'promo' });
  await row.waitFor();
  if (!(await row.textContent()).includes('nombre')) fail('the template row does not list its variables');
  await row.locator('button.preview').click();
  await page.locator('#preview q').waitFor();
  const preview = await text('#preview q');
  if (!/^Hola Sr?a?\. /.test(preview)) fail(`preview: ${preview}`);

  step('start a campaign: one contact lacks a variable');
  await page.click('a[href="#/campaigns"]');
  await page.fill('#new-campaign input[name=name]', 'Oferta');
  await page.click('#new-campaign button[type=submit]');
  await page.waitForSelector('#missing');
  if (!(await text('#missing')).includes('+34600000003')) fail('the contact missing a variable is not listed');
  await page.click('#skip-missing');

  step('watch it complete and reach read, live');
  await page.waitForFunction(() => document.querySelector('#campaign-status')?.dataset.status === 'completed');
  await page.waitForFunction(() => document.querySelector('#progress-text')?.textContent.startsWith('100 %'));
  const campaignRoute = (await page.evaluate(() => location.hash)).replace(/^#\//, '');
  await page.waitForFunction(() => document.querySelector('#count-read strong')?.textContent === '2', null, { timeout: 30_000 });
  if ((await text('#count-skipped strong')) !== '1') fail('the contact without the variable is not skipped');
  await page.waitForFunction(() => document.querySelectorAll('#recipients tr[data-status=read]').length === 2);

  if (!liveStreams.length) fail('the page never opened the live stream (/api/v1/live)');
  if (await page.isVisible('#live-state')) fail(`the live stream is not open: ${await text('#live-state')}`);

  step('the dashboard counts them: KPIs, charts, top contacts');
  await page.click('a[href="#/dashboard"]');
  await page.waitForFunction(() => document.querySelector('#kpi-sent strong')?.textContent === '2');
  await page.waitForSelector('#chart-timeline');
  await page.waitForSelector('#chart-groups');
  await page.waitForFunction(() => document.querySelectorAll('#top-contacts tbody tr').length === 2);

  step('Mensajes: a CSV and a text become a campaign, followed to the end');
  await page.click('a[href="#/messages"]');
  await page.setInputFiles('#send-messages input[name=file]', env.CSV_PATH);
  await page.fill('#send-messages textarea[name=message]', 'Hola {{ grupo }}');
  await page.click('#send-messages button[type=submit]');
  await page.waitForSelector('#send-result');
  if (!(await text('#send-result')).includes('3 queued, 0 skipped for a missing variable, 1 rows refused')) fail(`Mensajes says: ${await text('#send-result')}`);
  await page.waitForFunction(() => document.querySelector('#send-progress')?.textContent.startsWith('100 %'));

  step('switch to Spanish, and it stays after a reload');
  await page.click('a[href="#/dashboard"]');
  await page.waitForSelector('#kpi-sent');
  await page.selectOption('#language', 'es');
  await page.waitForSelector('a[href="#/contacts"]:has-text("Contactos")');
  if (!(await text('#kpi-sent')).startsWith('Enviados')) fail(`the KPI is not in Spanish: ${await text('#kpi-sent')}`);
  await page.reload();
  await page.waitForSelector('#kpi-sent');
  if ((await page.evaluate(() => document.documentElement.lang)) !== 'es') fail('the language choice was not kept');

  step('every page, both languages: screenshots and accessibility');
  await tour(page, { step, fail, extra: [campaignRoute] });
  await budgets(browser, context, env.APP_URL, { step, fail });
  console.log('ok');
} catch (e) {
  const shown = await page?.innerText('main').catch(() => '');
  fail(`${e.message}\nthe page shows:\n${shown}`);
} finally {
  clearTimeout(timer);
  await browser.close();
}

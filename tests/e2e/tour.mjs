// Visits every page of the dashboard in both languages: a full-page screenshot of each (the CI
// job keeps them as artefacts), an axe-core accessibility check of each (no serious or critical
// violation may remain), and the first-load budgets (JavaScript bytes on the wire, time until
// the dashboard's KPIs are on screen). Used by campaign.mjs once the pages have data to show.
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
export const PAGES = ['dashboard', 'messages', 'campaigns', 'contacts', 'templates', 'channels', 'integrations', 'events', 'media', 'signals', 'api-keys', 'audit-log'];

/** Serious and critical axe violations of what the page shows now. */
export async function violations(page) {
  if (!(await page.evaluate(() => 'axe' in window))) await page.evaluate(axeSource);
  const result = await page.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(', ')}`);
}

async function setLanguage(page, lang) {
  await page.selectOption('#language', lang);
  await page.waitForFunction((l) => document.documentElement.lang === l, lang);
}

/** Every page, `extra` routes too (e.g. a campaign's own page), in Spanish then English. */
export async function tour(page, { step, fail, extra = [] }) {
  const dir = process.env.SCREENSHOTS_DIR || join(tmpdir(), 'pregonero-screenshots');
  mkdirSync(dir, { recursive: true });
  const problems = [];
  for (const lang of ['es', 'en']) {
    await setLanguage(page, lang);
    for (const route of [...PAGES, ...extra]) {
      await page.evaluate((r) => { location.hash = `#/${r}`; }, route);
      await page.waitForSelector('main h1');
      // Focus moves to the new page's heading.
      await page.waitForFunction(() => document.activeElement?.matches('main h1'), null, { timeout: 5000 })
        .catch(() => problems.push(`${lang} #/${route}: focus did not move to the page's heading`));
      await page.waitForLoadState('networkidle').catch(() => {});
      // Charts draw without animation, but give the canvas a frame.
      await page.waitForTimeout(150);
      const name = `${lang}-${route.startsWith('campaigns/') ? 'campaign' : route}`;
      await page.screenshot({ path: join(dir, `${name}.png`), fullPage: true });
      for (const v of await violations(page)) problems.push(`${lang} #/${route}: ${v}`);
    }
    // The dashboard on a phone.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.evaluate(() => { location.hash = '#/dashboard'; });
    await page.waitForSelector('#kpi-sent');
    await page.screenshot({ path: join(dir, `${lang}-phone-dashboard.png`), fullPage: true });
    await page.click('header button.menu');
    await page.waitForSelector('#nav.open a[href="#/contacts"]');
    for (const v of await violations(page)) problems.push(`${lang} phone: ${v}`);
    await page.click('#nav.open a[href="#/contacts"]');
    await page.waitForSelector('#contacts');
    await page.setViewportSize({ width: 1280, height: 900 });
  }
  step(`screenshots of ${PAGES.length + extra.length} pages in 2 languages in ${dir}`);
  if (problems.length) fail(`accessibility (axe-core, serious or critical):\n${problems.join('\n')}`);
  step('axe-core: no serious or critical violation on any page, in either language');
}

/** Loads the signed-in dashboard `runs` times in fresh tabs: JavaScript bytes as sent (gzip)
 *  and the time until the KPIs show; fails over budget (250 KB; a median of 1 s). */
export async function budgets(browser, signedIn, app, { step, fail, runs = 5 }) {
  const times = [];
  let jsBytes = 0;
  // A new context with the session's cookie and an empty cache: the first load is a cold one.
  const context = await browser.newContext({ storageState: await signedIn.storageState() });
  for (let i = 0; i < runs; i++) {
    const page = await context.newPage();
    const scripts = [];
    page.on('response', (r) => r.request().resourceType() === 'script' && scripts.push(r));
    const t0 = Date.now();
    await page.goto(app);
    await page.waitForSelector('#kpi-sent strong');
    times.push(Date.now() - t0);
    if (i === 0) {
      for (const r of scripts) jsBytes += (await r.request().sizes()).responseBodySize;
    }
    await page.close();
  }
  await context.close();
  times.sort((a, b) => a - b);
  const median = times[Math.floor(times.length / 2)];
  console.log(`budget: first-load JavaScript ${jsBytes} bytes on the wire (gzip); budget 256000`);
  console.log(`budget: dashboard interactive (KPIs shown) over ${runs} loads: min ${times[0]} / median ${median} / max ${times[times.length - 1]} ms; budget median 1000`);
  if (jsBytes === 0 || jsBytes > 256_000) fail(`first-load JavaScript is ${jsBytes} bytes`);
  if (median > 1000) fail(`the dashboard took a median ${median} ms to show its KPIs`);
  step('budgets met');
}

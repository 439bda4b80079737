// The web UI in a real browser: Debian's Chromium driven by playwright-core, against a running
// pkgmirror. tests/it/browser.rs starts the server and runs this; tests/run.sh installs both.
//
// Inputs (environment):
//   BASE_URL      the server, e.g. http://127.0.0.1:PORT (no trailing slash)
//   ADMIN_TOKEN   the server's admin token
//   PROJECT       a normalized project name the mirror has cached, with at least one file
//   SEARCH        a substring of PROJECT to search for
//   HEX_PACKAGE   a package published to the hosted hex repository `team`, at HEX_VERSION,
//                 by the token named `ci`
//   ARTIFACTS     directory for the screenshots
//   PKGMIRROR_TEST_NODE_MODULES  where playwright-core is installed
//   CHROMIUM      the browser (default /usr/bin/chromium)
//
// Prints one line per checked step; exits non-zero with a message at the first unmet
// expectation, and always stops by itself (each step and the whole run have a time limit).

import { createRequire } from 'node:module';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const STEP_TIMEOUT_MS = 15_000;
const OVERALL_TIMEOUT_MS = 75_000;
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };

function need(name) {
  const value = process.env[name];
  if (!value) fail(`environment variable ${name} is not set`);
  return value;
}

function fail(message) {
  console.error(`FAIL: ${message}`);
  process.exit(1);
}

const baseUrl = need('BASE_URL').replace(/\/+$/, '');
const adminToken = need('ADMIN_TOKEN');
const project = need('PROJECT');
const search = need('SEARCH');
const artifacts = need('ARTIFACTS');
const nodeModules = need('PKGMIRROR_TEST_NODE_MODULES');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
if (!project.includes(search)) fail(`SEARCH ${JSON.stringify(search)} is not part of PROJECT`);

let chromium;
try {
  ({ chromium } = createRequire(join(nodeModules, '..', 'package.json'))('playwright-core'));
} catch (e) {
  fail(`cannot load playwright-core from ${nodeModules} (run tests/run.sh): ${e.message}`);
}
mkdirSync(artifacts, { recursive: true });

let current = 'start';
let context;
const userDataDir = mkdtempSync(join(tmpdir(), 'pkgmirror-chromium-'));
const cleanUp = () => rmSync(userDataDir, { recursive: true, force: true });

const watchdog = setTimeout(() => {
  console.error(`FAIL: the browser flow took longer than ${OVERALL_TIMEOUT_MS / 1000} s (in step: ${current})`);
  cleanUp();
  process.exit(2); // playwright kills the browser it launched on exit
}, OVERALL_TIMEOUT_MS);

// Console errors, uncaught exceptions and CSP violations, from every page.
const problems = [];
// While set, the document's own 401/403 (a rejected sign-in) is expected and not a problem.
let expectRejection = false;
function watch(page) {
  page.on('console', (msg) => {
    const text = msg.text();
    const source = msg.location()?.url || '';
    // The browser asks for /favicon.ico by itself when a page names no icon; its 404 is no fault.
    if (source && new URL(source, baseUrl).pathname === '/favicon.ico') return;
    if (expectRejection && /^Failed to load resource: .* status of 40[13]\b/.test(text)) return;
    if (msg.type() === 'error' || /Content.Security.Policy/i.test(text)) {
      problems.push(`console ${msg.type()} on ${page.url()}: ${text}${source ? ` (${source})` : ''}`);
    }
  });
  page.on('pageerror', (err) => problems.push(`uncaught exception on ${page.url()}: ${err.message}`));
}

function checkNoProblems() {
  if (problems.length > 0) {
    throw new Error(`the page logged errors:\n  ${problems.join('\n  ')}`);
  }
}

/** Runs one step with a time limit; prints what it checked. */
async function step(name, body) {
  current = name;
  let timer;
  const limit = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`step timed out after ${STEP_TIMEOUT_MS / 1000} s`)), STEP_TIMEOUT_MS);
  });
  try {
    const checked = await Promise.race([body(), limit]);
    checkNoProblems();
    console.log(`ok ${name}: ${checked}`);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `get` until `ok(value)` holds; throws with `what` and the last value seen. */
async function eventually(what, get, ok, timeout = 10_000) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await get();
      if (ok(last)) return last;
    } catch (e) {
      last = `(${e.message.split('\n')[0]})`;
    }
    if (Date.now() > deadline) {
      throw new Error(`expected ${what}; last seen: ${JSON.stringify(last)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function visible(page, selector, what = selector) {
  try {
    await page.locator(selector).first().waitFor({ state: 'visible', timeout: 10_000 });
  } catch {
    throw new Error(`expected ${what} to be visible on ${page.url()}`);
  }
}

const pathOf = (page) => new URL(page.url()).pathname;
const shot = (page, name, fullPage = true) => page.screenshot({ path: join(artifacts, name), fullPage });

/** Submits `form` by clicking its submit button (or pressing Enter in `field`). */
async function submit(page, form, field) {
  const button = page.locator(`${form} button[type=submit], ${form} input[type=submit], ${form} button:not([type])`);
  if ((await button.count()) > 0) {
    await button.first().click();
  } else {
    await page.locator(field).press('Enter');
  }
  await page.waitForLoadState('load');
}

async function main() {
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath,
      headless: true,
      viewport: DESKTOP,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      timeout: STEP_TIMEOUT_MS,
    });
  } catch (e) {
    throw new Error(`cannot launch ${executablePath} (run tests/run.sh): ${e.message}`);
  }
  context.setDefaultTimeout(10_000);
  context.setDefaultNavigationTimeout(STEP_TIMEOUT_MS);
  // Report CSP violations even where the browser would not log them (e.g. report-only).
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || '(inline)'}`);
    });
  });
  context.on('page', watch);
  const page = context.pages()[0] ?? (await context.newPage());
  watch(page);

  await step('a. home', async () => {
    const response = await page.goto(`${baseUrl}/`);
    if (response.status() !== 200) throw new Error(`GET / answered ${response.status()}`);
    await visible(page, 'h1');
    const simple = `${baseUrl}/simple/`;
    await eventually(`#setup to contain ${simple}`, () => page.locator('#setup').textContent(), (t) =>
      t.includes(simple),
    );
    // The last 24 hours: four server-drawn SVG charts, each with a line or a first dot.
    const charts = page.locator('#charts svg.chart[role="img"]');
    const drawn = await charts.count();
    if (drawn !== 4) throw new Error(`#charts has ${drawn} charts, not 4`);
    for (const id of ['chart-requests', 'chart-hit-ratio', 'chart-bytes', 'chart-latency']) {
      await visible(page, `#${id} svg.chart`, `#${id}`);
    }
    const marks = await page.locator('#chart-requests svg :is(polyline, circle)').count();
    if (marks < 1) throw new Error('the requests chart draws nothing');
    const caption = await page.locator('#chart-requests figcaption').textContent();
    if (!/requests\/min/.test(caption)) throw new Error(`the requests chart says ${caption}`);
    await shot(page, '01-home.png');
    const phone = await context.newPage();
    await phone.setViewportSize(PHONE);
    await phone.goto(`${baseUrl}/`);
    await visible(phone, 'h1', 'h1 (phone)');
    await shot(phone, '01-home-phone.png', false);
    await phone.close();
    return `h1 visible, #setup shows ${simple}, 4 charts drawn; screenshots desktop + ${PHONE.width}x${PHONE.height}`;
  });

  const projectPath = `/packages/pypi/${project}`;
  let projectLink;
  await step('b. search', async () => {
    await page.locator('#search-q').fill(search);
    await page.locator('#search-q').press('Enter');
    await page.waitForURL((url) => url.pathname === '/packages');
    await page.waitForLoadState('load');
    const links = page.locator('#packages a.project-link');
    const found = await eventually(
      `#packages to have an a.project-link to ${projectPath}`,
      () => links.evaluateAll((as) => as.map((a) => ({ path: a.pathname, origin: a.origin, text: a.textContent.trim() }))),
      (all) => all.some((l) => l.path.replace(/\/$/, '') === projectPath && l.origin === baseUrl),
    );
    const index = found.findIndex((l) => l.path.replace(/\/$/, '') === projectPath);
    const text = found[index].text;
    if (!text.toLowerCase().replace(/[-_.]+/g, '-').includes(project)) {
      throw new Error(`the link to ${projectPath} reads ${JSON.stringify(text)}, not the project's name`);
    }
    projectLink = links.nth(index);
    await shot(page, '02-search.png');
    return `"${search}" -> ${pathOf(page)}, ${found.length} result(s), link "${text}" -> ${projectPath}`;
  });

  await step('c. project page', async () => {
    await projectLink.click();
    await page.waitForURL((url) => url.pathname.replace(/\/$/, '') === projectPath);
    await page.waitForLoadState('load');
    const h1 = await eventually(`h1 to contain ${project}`, () => page.locator('h1').first().textContent(), (t) =>
      t.toLowerCase().includes(project.toLowerCase()),
    );
    if ((await page.locator('#versions').count()) === 0) throw new Error(`no #versions on ${page.url()}`);
    const prefix = `/simple/${project}/`;
    const downloads = await page
      .locator('a.download')
      .evaluateAll((as) => as.map((a) => ({ path: a.pathname, origin: a.origin, href: a.getAttribute('href') })));
    const good = downloads.filter((d) => d.origin === baseUrl && d.path.startsWith(prefix) && d.path !== prefix);
    if (good.length === 0) {
      throw new Error(`no a.download link under ${prefix}; found: ${JSON.stringify(downloads.map((d) => d.href))}`);
    }
    const head = await page.request.head(`${baseUrl}${good[0].path}`);
    if (head.status() !== 200) throw new Error(`HEAD ${good[0].path} answered ${head.status()}`);
    await shot(page, '03-project.png');
    return `h1 "${h1.trim()}", #versions present, ${good.length} download link(s) under ${prefix} (HEAD ${good[0].path}: 200)`;
  });

  await step('d. admin sign-in', async () => {
    await page.goto(`${baseUrl}/admin`);
    await visible(page, 'form#signin');
    await shot(page, '04-signin.png');
    await page.locator('#token').fill(`wrong-${adminToken}-wrong`);
    expectRejection = true;
    await submit(page, 'form#signin', '#token');
    await visible(page, '.error', '.error after a wrong token');
    expectRejection = false;
    if (await page.locator('form#forget-project').isVisible()) {
      throw new Error('a wrong token reached the admin page');
    }
    const error = (await page.locator('.error').first().textContent()).trim();
    await page.locator('#token').fill(adminToken);
    await submit(page, 'form#signin', '#token');
    await visible(page, 'form#forget-project', 'form#forget-project after signing in');
    await shot(page, '05-admin.png');
    return `form#signin; wrong token -> .error "${error}"; right token -> form#forget-project`;
  });

  await step('e. forget project', async () => {
    await page.locator('form#forget-project input[name=project]').fill(project);
    await submit(page, 'form#forget-project', 'form#forget-project input[name=project]');
    const row = page.locator('#admin-log tbody tr').first();
    const cells = await eventually(
      `#admin-log's first row to be forget-project / ${project} / ok`,
      async () => ({
        action: (await row.locator('td.action').textContent({ timeout: 1000 })).trim(),
        target: (await row.locator('td.target').textContent({ timeout: 1000 })).trim(),
        outcome: (await row.locator('td.outcome').textContent({ timeout: 1000 })).trim(),
      }),
      (c) => c.action.includes('forget-project') && c.target.includes(project) && c.outcome.includes('ok'),
    );
    await visible(page, '#flash');
    const flash = (await page.locator('#flash').first().textContent()).trim();
    await shot(page, '06-admin-log.png');
    return `#flash "${flash}"; #admin-log first row: ${cells.action} | ${cells.target} | ${cells.outcome}`;
  });

  const hexPackage = need('HEX_PACKAGE');
  const hexVersion = need('HEX_VERSION');
  await step('f. hosted hex package', async () => {
    await page.goto(`${baseUrl}/packages?ecosystem=hex`);
    await visible(page, '#hosted-hex-team', '#hosted-hex-team on the hex tab');
    const link = page.locator(`#hosted-hex-team a.project-link[href="/packages/hex/${hexPackage}"]`);
    await visible(page, `#hosted-hex-team a.project-link[href="/packages/hex/${hexPackage}"]`);
    await link.click();
    await page.waitForURL((url) => url.pathname === `/packages/hex/${hexPackage}`);
    await visible(page, '#hosted-note');
    const publisher = (await page.locator('td.publisher').first().textContent()).trim();
    if (!publisher.startsWith('ci')) throw new Error(`the release's publisher reads ${JSON.stringify(publisher)}`);
    const tarball = `/hex/repos/team/tarballs/${hexPackage}-${hexVersion}.tar`;
    const href = await page.locator('a.download').first().getAttribute('href');
    if (href !== tarball) throw new Error(`the download link is ${href}, not ${tarball}`);
    const head = await page.request.head(`${baseUrl}${tarball}`);
    if (head.status() !== 200) throw new Error(`HEAD ${tarball} answered ${head.status()}`);
    await shot(page, '07-hosted-hex.png');
    return `#hosted-hex-team links ${hexPackage}; its page names publisher "${publisher}", ${tarball} (HEAD 200)`;
  });

  await step('g. retire a hosted release', async () => {
    await page.goto(`${baseUrl}/admin`);
    await visible(page, 'form#hex-retire-form');
    await page.locator('#hex-repository').selectOption('team');
    await page.locator('#hex-package').fill(hexPackage);
    await page.locator('#hex-version').fill(hexVersion);
    await page.locator('#hex-reason').selectOption('security');
    await page.locator('#hex-message').fill('use a newer release');
    await submit(page, 'form#hex-retire-form', '#hex-message');
    const row = page.locator('#admin-log tbody tr').first();
    const outcome = await eventually(
      `#admin-log's first row to be hex-retire / ok: retired (security)`,
      async () => (await row.textContent({ timeout: 1000 })).replace(/\s+/g, ' ').trim(),
      (text) => text.includes('hex-retire') && text.includes('ok: retired (security)'),
    );
    await page.goto(`${baseUrl}/packages/hex/${hexPackage}`);
    const badge = (await page.locator('.badge.retired').first().textContent()).trim();
    if (!badge.includes('security: use a newer release')) throw new Error(`the retired badge reads ${JSON.stringify(badge)}`);
    return `#admin-log: ${outcome}; the package page shows "${badge}"`;
  });

  await step('h. console', async () => `no console errors, uncaught exceptions or CSP violations`);
}

try {
  await main();
  await context.close();
  clearTimeout(watchdog);
  cleanUp();
  console.log('browser flow: all steps passed');
} catch (e) {
  console.error(`FAIL in step ${current}: ${e.message}`);
  const page = context?.pages()[0];
  if (page) {
    console.error(`  at ${page.url()}`);
    await page
      .screenshot({ path: join(artifacts, 'failure.png'), fullPage: true, timeout: 5000 })
      .then(() => console.error(`  screenshot: ${join(artifacts, 'failure.png')}`))
      .catch(() => {});
  }
  await context?.close().catch(() => {});
  cleanUp();
  process.exit(1);
}

// The console's browser test: one table, three browsers (a GM and two players), driven through
// the real UI against a real gateway. Plain Node + playwright-core; it installs nothing.
//
//   DLAB_URL=http://127.0.0.1:8080 npm test     # a running gateway that serves the app at /app/
//   npm test                                     # starts `local-gateway --ephemeral` itself
//
// Without DLAB_URL the test starts the gateway binary (DLAB_GATEWAY_BIN, else `local-gateway`
// under $CARGO_TARGET_DIR/{debug,local,release}, else on PATH) on a free loopback port, and
// stops it by its pid at the end. When that gateway does not serve the built app under /app/,
// the test serves shared/web/dist with Vite's preview server, forwarding the API and the
// WebSocket to the gateway. It needs `chromium` on PATH (Debian: apt-get install -y chromium)
// or CHROMIUM_BIN, and a built app (npm run build, or infra/web-build.sh).
//
// Every wait is bounded (`until`: poll a condition with a deadline); nothing sleeps as an
// assertion. Screenshots of each step go to test-artifacts/ (git-ignored); the GM's table view
// is copied to docs/table.png for the README when DLAB_UPDATE_DOCS=1.

import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, copyFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const web = resolve(here, '..');
const repo = resolve(web, '..', '..');
const artifacts = join(web, 'test-artifacts');
const WAIT = Number(process.env.DLAB_TEST_WAIT_MS ?? 30_000);

let passed = 0;
let failed = 0;
const cleanup = [];
/** Pages to photograph and console errors to print when a step fails. */
const opened = [];
const errors = [];
let closing = false;

function log(line) {
  process.stdout.write(`${line}\n`);
}

/** Polls `check` until it returns a truthy value; throws `what` with the last value after the deadline. */
async function until(what, check, timeout = WAIT) {
  const deadline = Date.now() + timeout;
  let last;
  let lastError;
  for (;;) {
    try {
      last = await check();
      if (last) return last;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) {
      const detail = lastError ? ` (last error: ${lastError.message})` : ` (last value: ${JSON.stringify(last)})`;
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${detail}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function step(name, body) {
  const started = Date.now();
  try {
    await body();
    passed++;
    log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failed++;
    log(`FAIL ${name}: ${e.stack ?? e}`);
    for (const { name: who, page } of opened) {
      await page.screenshot({ path: join(artifacts, `failed-${who}.png`), fullPage: true }).catch(() => {});
    }
    if (errors.length) log(`console errors so far:\n  ${errors.join('\n  ')}`);
    throw e;
  }
}

function freePort() {
  return new Promise((res, rej) => {
    const server = createServer();
    server.once('error', rej);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => res(port));
    });
  });
}

function which(name) {
  try {
    return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

function gatewayBinary() {
  if (process.env.DLAB_GATEWAY_BIN) return process.env.DLAB_GATEWAY_BIN;
  const target = process.env.CARGO_TARGET_DIR;
  if (target) {
    for (const profile of ['debug', 'local', 'release']) {
      const bin = join(target, profile, 'local-gateway');
      if (existsSync(bin)) return bin;
    }
  }
  return which('local-gateway');
}

/** Starts `local-gateway --ephemeral` on a free port; resolves with its HTTP URL. */
async function startGateway() {
  const bin = gatewayBinary();
  if (!bin) throw new Error('no gateway: set DLAB_URL, or DLAB_GATEWAY_BIN / CARGO_TARGET_DIR to a built local-gateway');
  const port = await freePort();
  const srd = process.env.DLAB_SRD_CACHE ?? join(repo, '.dlab', 'srd');
  const args = ['--ephemeral', '--listen', `127.0.0.1:${port}`, '--srd-cache', srd];
  // A gateway with LAN invites gets them on loopback, so the GM's invite button and the
  // invite link are part of the scenario.
  const help = execFileSync(bin, ['--help'], { encoding: 'utf8' });
  if (/--lan\b/.test(help)) args.push('--lan', '127.0.0.1');
  const child = spawn(bin, args, { cwd: repo, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d) => (output += d));
  child.stderr.on('data', (d) => (output += d));
  cleanup.push(async () => {
    if (child.exitCode === null) {
      child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await once(child, 'exit');
      clearTimeout(timer);
    }
  });
  const url = `http://127.0.0.1:${port}`;
  await until('the gateway to answer /healthz', async () => {
    if (child.exitCode !== null) throw new Error(`the gateway exited (${child.exitCode}): ${output}`);
    const r = await fetch(`${url}/healthz`);
    return r.ok;
  }, 120_000);
  log(`gateway ${bin} on ${url} (pid ${child.pid})`);
  return url;
}

/** Serves dist/ with Vite's preview server, forwarding the API and the socket to `api`. */
async function startPreview(api) {
  if (!existsSync(join(web, 'dist', 'index.html'))) throw new Error('no dist/: run `npm run build` first');
  process.env.DLAB_API = api;
  const { preview, createLogger } = await import('vite');
  // Once the browsers close, the proxy's sockets to them break mid-write: not worth a line.
  const logger = createLogger('warn');
  const error = logger.error;
  logger.error = (msg, options) => {
    if (!closing) error(msg, options);
  };
  const port = await freePort();
  const server = await preview({ root: web, customLogger: logger, preview: { host: '127.0.0.1', port, strictPort: true } });
  cleanup.push(() => new Promise((r) => server.httpServer.close(() => r())));
  log(`app served by vite preview on 127.0.0.1:${port}, API forwarded to ${api}`);
  return `http://127.0.0.1:${port}`;
}

async function devToken(base, userId) {
  const r = await fetch(`${base}/dev/token`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ userId }),
  });
  if (!r.ok) throw new Error(`dev token: ${r.status}`);
  return (await r.json()).token;
}

async function serverHp(base, token, sessionId, instanceId) {
  const r = await fetch(`${base}/sessions/${encodeURIComponent(sessionId)}/actors/${encodeURIComponent(instanceId)}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  if (!r.ok) throw new Error(`runtime actor: ${r.status}`);
  const actor = await r.json();
  return actor.attributes?.hp?.value;
}

// ---- page helpers -----------------------------------------------------------------------

const tid = (id) => `[data-testid="${id}"]`;

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

/** Fails when the page scrolls sideways (a layout wider than the viewport). */
async function fitsWidth(page, what) {
  const { scroll, width } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
  if (scroll > width) throw new Error(`${what} is ${scroll} px wide in a ${width} px viewport`);
}

/** Screenshots `page` at 390×844 too, checking that nothing sticks out sideways. */
async function mobileShot(page, name) {
  const size = page.viewportSize();
  await page.setViewportSize({ width: 390, height: 844 });
  try {
    await fitsWidth(page, name);
    await shot(page, `${name}-390`);
  } finally {
    await page.setViewportSize(size);
  }
}

async function signIn(page, app, user) {
  await page.goto(`${app}/app/#/signin`);
  await page.fill(tid('signin-user'), user);
  await page.click(tid('signin-dev'));
  await page.locator(tid('signed-in-as')).filter({ hasText: user }).waitFor({ timeout: WAIT });
}

/** The table's facts on a page: status, pending, last applied, and each actor's HP and conditions. */
async function facts(page) {
  return page.evaluate(() => {
    const root = document.querySelector('[data-testid="table"]');
    if (!root) return null;
    const actors = {};
    for (const card of document.querySelectorAll('[data-testid="actor-card"]')) {
      actors[card.getAttribute('data-name')] = {
        id: card.getAttribute('data-instance-id'),
        hp: card.querySelector('[data-testid="actor-hp"]')?.textContent?.trim(),
        conditions: [...card.querySelectorAll('[data-testid="actor-conditions"] li')].map((li) => li.textContent.trim()),
        pending: !!card.querySelector('[data-testid="actor-pending"]'),
      };
    }
    return {
      status: root.getAttribute('data-status'),
      pending: Number(root.getAttribute('data-pending')),
      lastApplied: Number(root.getAttribute('data-last-applied')),
      live: root.getAttribute('data-live') === 'true',
      actors,
      log: [...document.querySelectorAll('[data-testid="log-entry"]')].map((li) => ({
        type: li.getAttribute('data-type'),
        verdict: li.getAttribute('data-verdict'),
        sequence: Number(li.getAttribute('data-sequence')),
      })),
    };
  });
}

/** Waits until every page is connected, has nothing pending and shows the same sequence and actors. */
async function converged(pages, what, extra = () => true) {
  return until(what, async () => {
    const all = await Promise.all(pages.map(facts));
    if (all.some((f) => !f || f.status !== 'connected' || f.pending !== 0 || !f.live)) return false;
    const key = (f) => JSON.stringify([f.lastApplied, Object.entries(f.actors).map(([n, a]) => [n, a.hp, a.conditions, a.pending]).sort()]);
    if (new Set(all.map(key)).size !== 1) return false;
    return extra(all[0], all) ? all[0] : false;
  });
}

// ---- the scenario -----------------------------------------------------------------------

async function main() {
  rmSync(artifacts, { recursive: true, force: true });
  mkdirSync(artifacts, { recursive: true });

  let base = process.env.DLAB_URL?.replace(/\/+$/, '');
  if (!base) base = await startGateway();
  let app = base;
  const probe = await fetch(`${base}/app/`, { redirect: 'manual' });
  if (!probe.ok) {
    if (process.env.DLAB_URL) throw new Error(`${base}/app/ answered ${probe.status}: does this gateway serve the console?`);
    app = await startPreview(base);
  }

  const executablePath = process.env.CHROMIUM_BIN ?? which('chromium') ?? which('chromium-browser');
  if (!executablePath) throw new Error('no chromium on PATH (Debian: apt-get install -y chromium), or set CHROMIUM_BIN');
  // Playwright gives every launch a fresh, temporary user data directory of its own.
  const browser = await chromium.launch({
    executablePath,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  cleanup.unshift(() => browser.close());

  // The one failed request the app makes on purpose: probing LAN invites on a gateway without them.
  const expected404 = (msg) => /\/lan\/invites$/.test(msg.location()?.url ?? '') && /404/.test(msg.text());
  async function open(name, viewport) {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    opened.push({ name, page });
    page.on('console', (msg) => {
      if (msg.type() === 'error' && !expected404(msg)) errors.push(`${name}: console: ${msg.text()} @ ${msg.location()?.url ?? ''}`);
    });
    page.on('pageerror', (e) => errors.push(`${name}: page error: ${e.message}`));
    return { context, page };
  }
  const gm = await open('gm', { width: 1280, height: 800 });
  const p1 = await open('alice', { width: 390, height: 844 });
  const p2 = await open('bob', { width: 1280, height: 800 });

  let campaignId = '';
  let sessionId = '';
  let tableUrl = '';

  await step('GM signs in and creates a campaign', async () => {
    await signIn(gm.page, app, 'gm');
    await gm.page.fill(tid('campaign-name'), 'Goblin Arrows');
    await gm.page.click(tid('campaign-create'));
    await gm.page.locator(tid('campaign-title')).filter({ hasText: 'Goblin Arrows' }).waitFor({ timeout: WAIT });
    campaignId = (await gm.page.textContent(tid('campaign-id'))).trim();
    await shot(gm.page, '01-campaign');
  });

  await step('GM adds both players', async () => {
    for (const user of ['alice', 'bob']) {
      await gm.page.fill(tid('member-user'), user);
      await gm.page.selectOption(tid('member-role'), 'player');
      await gm.page.click(tid('member-add'));
      await gm.page.locator(`${tid('member')}[data-user-id="${user}"]`).waitFor({ timeout: WAIT });
    }
  });

  await step('GM builds an encounter from the compendium (search, stat block, bulk and single create)', async () => {
    const page = gm.page;
    await page.fill(tid('compendium-q'), 'goblin');
    await page.selectOption(tid('compendium-type'), 'monsters');
    await page.click(tid('compendium-search'));
    const goblin = page.locator(tid('compendium-result')).filter({ hasText: /^\s*Goblin\s*$/ }).first();
    await goblin.waitFor({ timeout: WAIT });
    await goblin.click();
    await page.locator(tid('statblock')).filter({ hasText: 'Goblin' }).waitFor({ timeout: WAIT });
    await until('the goblin stat block numbers', async () => (await page.textContent(tid('stat-ac')))?.trim() !== '—');
    await page.fill(tid('create-count'), '2');
    await page.fill(tid('create-pattern'), 'Goblin {n}');
    await page.click(tid('create-actors'));
    await page.locator(tid('create-message')).filter({ hasText: 'Goblin 2' }).waitFor({ timeout: WAIT });
    await shot(page, '02-compendium');
    await fitsWidth(page, 'the campaign view at 1280');
    await mobileShot(page, '02-compendium');
    // A hero for the players: one actor from a template, named.
    await page.fill(tid('compendium-q'), 'veteran');
    await page.fill(tid('compendium-crmin'), '1');
    await page.fill(tid('compendium-crmax'), '5');
    await page.click(tid('compendium-search'));
    const veteran = page.locator(tid('compendium-result')).filter({ hasText: /^\s*Veteran\s*$/ }).first();
    await veteran.waitFor({ timeout: WAIT });
    await veteran.click();
    await page.locator(tid('statblock')).filter({ hasText: 'Veteran' }).waitFor({ timeout: WAIT });
    await page.fill(tid('create-count'), '1');
    await page.fill(tid('create-name'), 'Sir Bram');
    await page.click(tid('create-actors'));
    await page.locator(tid('create-message')).filter({ hasText: 'Sir Bram' }).waitFor({ timeout: WAIT });
    for (const name of ['Goblin 1', 'Goblin 2', 'Sir Bram']) {
      await page.locator(`${tid('campaign-actor')}[data-actor-name="${name}"]`).waitFor({ timeout: WAIT });
    }
  });

  await step('GM creates a session and adds the actors', async () => {
    const page = gm.page;
    await page.fill(tid('session-name'), 'Session 1');
    await page.click(tid('session-create'));
    const link = page.locator(tid('session-open')).filter({ hasText: 'Session 1' });
    await link.waitFor({ timeout: WAIT });
    sessionId = await link.getAttribute('data-session-id');
    for (const name of ['Goblin 1', 'Goblin 2', 'Sir Bram']) {
      await page.click(`${tid('campaign-actor')}[data-actor-name="${name}"] ${tid('actor-to-session')}`);
      await page.locator(tid('message')).filter({ hasText: `${name} joined` }).waitFor({ timeout: WAIT });
    }
    await shot(page, '03-session');
    await link.click();
    tableUrl = page.url();
    await converged([page], 'the GM table to show three actors', (f) => Object.keys(f.actors).length === 3);
  });

  const pages = [gm.page, p1.page, p2.page];

  await step('both players sign in and open the table', async () => {
    for (const [p, user] of [[p1, 'alice'], [p2, 'bob']]) {
      await signIn(p.page, app, user);
      await p.page.locator(`${tid('campaign-link')}[data-campaign-id="${campaignId}"]`).click();
      await p.page.locator(`${tid('session-open')}[data-session-id="${sessionId}"]`).click();
    }
    await converged(pages, 'all three tables to show the same three actors', (f) => Object.keys(f.actors).length === 3);
    await shot(p1.page, '04-player1-table-mobile');
    await fitsWidth(p1.page, 'the table at 390');
    await fitsWidth(p2.page, 'the table at 1280');
  });

  const token = await devToken(base, 'gm');
  const idOf = async (name) => (await facts(gm.page)).actors[name].id;

  await step('GM overrides a goblin to 40 HP (core:gm_override), every page shows it', async () => {
    const page = gm.page;
    const goblin = await idOf('Goblin 1');
    for (const path of ['attributes.hp.max', 'attributes.hp.value']) {
      await page.selectOption(tid('ov-instance'), goblin);
      await page.fill(tid('ov-path'), path);
      await page.fill(tid('ov-value'), '40');
      await page.click(tid('ov-apply'));
    }
    await converged(pages, 'Goblin 1 at 40 / 40 everywhere', (f) => f.actors['Goblin 1'].hp === '40 / 40');
  });

  const attackCount = (f) => f.log.filter((e) => e.type === 'plugin:dnd5e:attack').length;

  async function attack(page, attacker, target) {
    const ids = await facts(page);
    await page.selectOption(tid('attacker'), ids.actors[attacker].id);
    await page.selectOption(tid('target'), ids.actors[target].id);
    await page.click(tid('attack'));
  }

  await step('player 1 attacks with server dice; all pages show the same HP, verified', async () => {
    await attack(p1.page, 'Sir Bram', 'Goblin 1');
    const f = await converged(pages, 'one attack applied everywhere', (x) => attackCount(x) === 1);
    const goblin = await idOf('Goblin 1');
    const hp = await serverHp(base, token, sessionId, goblin);
    if (f.actors['Goblin 1'].hp !== `${hp} / 40`) throw new Error(`pages show ${f.actors['Goblin 1'].hp}, the server ${hp}`);
    for (const page of pages) {
      const mine = await facts(page);
      const verdicts = mine.log.filter((e) => e.type === 'plugin:dnd5e:attack').map((e) => e.verdict);
      if (verdicts.join() !== 'verified') throw new Error(`attack verdicts ${verdicts} on a page`);
    }
    await shot(p1.page, '05-attack-player1');
    await shot(gm.page, '05-attack-gm');
  });

  await step('both players attack, then damage, the same goblin at once; no hit is lost and all pages converge on the server HP', async () => {
    // When both attacks hit, the second commit meets the first one's HP, is refused as a
    // conflict and rebased onto the new HP. Dice decide the hits, so up to six rounds are
    // played until a rebase happened; every round must converge on the server's HP either way.
    const rebased = async () =>
      (await p1.page.locator(`${tid('notice')}[data-kind="rebase"]`).count()) +
      (await p2.page.locator(`${tid('notice')}[data-kind="rebase"]`).count());
    // The GM makes the goblin easy to hit (AC 1: only a natural 1 misses) and heals it, so
    // both attacks of a round usually hit and meet.
    const goblin = await idOf('Goblin 1');
    for (const [path, value] of [['attributes.ac', '1'], ['attributes.hp.value', '40']]) {
      await gm.page.selectOption(tid('ov-instance'), goblin);
      await gm.page.fill(tid('ov-path'), path);
      await gm.page.fill(tid('ov-value'), value);
      await gm.page.click(tid('ov-apply'));
    }
    await converged(pages, 'Goblin 1 at AC 1 and 40 HP everywhere', (f) => f.actors['Goblin 1'].hp === '40 / 40');
    let attacks = 1;
    for (let round = 0; round < 2; round++) {
      attacks += 2;
      await Promise.all([attack(p1.page, 'Sir Bram', 'Goblin 1'), attack(p2.page, 'Sir Bram', 'Goblin 1')]);
      const f = await converged(pages, `${attacks} attacks applied everywhere`, (x) => attackCount(x) === attacks);
      const hp = await serverHp(base, token, sessionId, goblin);
      if (f.actors['Goblin 1'].hp !== `${hp} / 40`) throw new Error(`pages show ${f.actors['Goblin 1'].hp}, the server ${hp}`);
    }
    // An attack waits for two server rolls before it is built, so on a fast local server one
    // player's attack is usually applied before the other's is built. Damage is built on the
    // click: two clicks at once meet at the server, and the loser is rebased.
    const damageCount = (f) => f.log.filter((e) => e.type === 'plugin:dnd5e:damage').length;
    await gm.page.selectOption(tid('ov-instance'), goblin);
    await gm.page.fill(tid('ov-path'), 'attributes.hp.value');
    await gm.page.fill(tid('ov-value'), '40');
    await gm.page.click(tid('ov-apply'));
    await converged(pages, 'Goblin 1 healed to 40 by the GM', (f) => f.actors['Goblin 1'].hp === '40 / 40');
    for (const p of [p1.page, p2.page]) {
      await p.selectOption(tid('target'), goblin);
      await p.fill(tid('amount'), '3');
    }
    let damages = 0;
    let rounds = 0;
    while (rounds < 5) {
      rounds++;
      damages += 2;
      await Promise.all([p1.page.click(tid('damage')), p2.page.click(tid('damage'))]);
      const f = await converged(pages, `${damages} damage events everywhere`, (x) => damageCount(x) === damages);
      const hp = await serverHp(base, token, sessionId, goblin);
      if (hp !== 40 - 3 * damages) throw new Error(`the server has ${hp} HP after ${damages} hits of 3 from 40: a hit was lost`);
      if (f.actors['Goblin 1'].hp !== `${hp} / 40`) throw new Error(`pages show ${f.actors['Goblin 1'].hp}, the server ${hp}`);
      if ((await rebased()) > 0) break;
    }
    log(`     simultaneous damage: ${rounds} round(s); a conflicting change was rebased: ${(await rebased()) > 0 ? 'yes' : 'no (the clicks never met)'}`);
    await shot(p2.page, '06-concurrent-player2');
  });

  await step('player 2 goes offline, acts, the GM changes HP; player 2 comes back and converges', async () => {
    const goblin2 = await idOf('Goblin 2');
    await p2.context.setOffline(true);
    await until('player 2 to show offline', async () => (await facts(p2.page)).status === 'offline');
    // Player 2 marks Goblin 2 prone while offline: queued, shown at once as pending.
    await p2.page.selectOption(tid('target'), goblin2);
    await p2.page.selectOption(tid('condition'), 'prone');
    await p2.page.click(tid('condition-add'));
    await until('player 2 to show 1 pending while offline', async () => {
      const f = await facts(p2.page);
      return f.pending === 1 && f.actors['Goblin 2'].pending && f.actors['Goblin 2'].conditions.includes('prone');
    });
    await p2.page.locator(tid('pending-count')).waitFor({ timeout: WAIT });
    await shot(p2.page, '07-player2-offline');
    // Meanwhile the GM sets the goblin's HP and poisons it.
    await gm.page.selectOption(tid('ov-instance'), goblin2);
    await gm.page.fill(tid('ov-path'), 'attributes.hp.value');
    await gm.page.fill(tid('ov-value'), '3');
    await gm.page.click(tid('ov-apply'));
    await gm.page.selectOption(tid('target'), goblin2);
    await gm.page.selectOption(tid('condition'), 'poisoned');
    await gm.page.click(tid('condition-add'));
    await converged([gm.page, p1.page], 'GM and player 1 to show Goblin 2 at 3 HP, poisoned', (f) =>
      f.actors['Goblin 2'].hp === '3 / 7' && f.actors['Goblin 2'].conditions.join() === 'poisoned',
    );
    const offline = await facts(p2.page);
    if (offline.actors['Goblin 2'].hp === '3 / 7') throw new Error('player 2 saw the GM change while offline');
    await p2.context.setOffline(false);
    // Back online: the queued condition meets the GM's change (a refused compare-and-set), the
    // 5e rules hand it to the GM, and player 2's page says so.
    await converged(pages, 'all pages to show Goblin 2 at 3 HP, poisoned', (f) =>
      f.actors['Goblin 2'].hp === '3 / 7' && f.actors['Goblin 2'].conditions.join() === 'poisoned',
    );
    await p2.page.locator(`${tid('notice')}[data-kind="rollback"]`).first().waitFor({ timeout: WAIT });
    await p2.page.locator(`${tid('notice')}[data-kind="escalated"]`).first().waitFor({ timeout: WAIT });
    await shot(p2.page, '08-player2-back');
  });

  await step('the GM sees the escalated conflict and resolves it; every page converges', async () => {
    const page = gm.page;
    const conflict = page.locator(`${tid('conflict')}[data-resolved="false"]`).first();
    await until('the conflict to reach the GM', async () => {
      if (await conflict.count()) return true;
      await page.click(tid('conflicts-refresh'));
      return false;
    });
    await shot(page, '09-conflict');
    await conflict.locator(`${tid('conflict-option')}[data-choice="apply"]`).click();
    await converged(pages, 'all pages to show Goblin 2 prone (the GM chose player 2\'s change)', (f) =>
      f.actors['Goblin 2'].conditions.join() === 'prone' && f.actors['Goblin 2'].hp === '3 / 7',
    );
    await page.locator(`${tid('conflict')}[data-resolved="true"]`).first().waitFor({ timeout: WAIT });
  });

  await step('GM rolls initiative with server dice and ends a turn; every page follows', async () => {
    const page = gm.page;
    await page.click(tid('initiative-roll'));
    const order = async (p) => p.locator(tid('init-entry')).allTextContents();
    const current = async (p) => (await p.locator(`${tid('init-entry')}[aria-current="true"]`).allTextContents()).join();
    await until('three combatants in the order on every page', async () => {
      const lists = await Promise.all(pages.map(order));
      return lists.every((l) => l.length === 3) && new Set(lists.map((l) => l.join('|'))).size === 1;
    });
    const first = await current(page);
    await page.click(tid('end-turn'));
    await until('the next turn on every page', async () => {
      const now = await Promise.all(pages.map(current));
      return now.every((c) => c && c === now[0] && c !== first);
    });
    const f = await converged(pages, 'the initiative events everywhere');
    const verdict = f.log.find((e) => e.type === 'plugin:dnd5e:initiative')?.verdict;
    if (verdict !== 'verified') throw new Error(`initiative verdict ${verdict}`);
  });

  await step('GM tools: require server rolls, LAN invite (or its absence), table screenshot', async () => {
    const page = gm.page;
    await page.check(tid('require-server-rolls'));
    await until('every page to show the server-rolls rule', async () => {
      for (const p of pages) if (!(await p.locator(tid('server-rolls-badge')).count())) return false;
      return true;
    });
    await page.selectOption(tid('lan-user'), 'bob');
    await page.click(tid('lan-invite'));
    await until('a LAN invite or its absence', async () =>
      (await page.locator(`${tid('lan-invite-result')} svg`).count()) > 0 || (await page.locator(tid('lan-invite')).count()) === 0,
    );
    if (await page.locator(tid('lan-invite')).count()) {
      const url = await page.inputValue(tid('lan-invite-url'));
      if (!url.includes('#/join?token=')) throw new Error(`invite link ${url}`);
      if (app === base) {
        // The link signs a fourth browser (a phone) in as bob, straight into the campaign.
        const phone = await open('phone', { width: 390, height: 844 });
        await phone.page.goto(url);
        await phone.page.locator(tid('signed-in-as')).filter({ hasText: 'bob' }).waitFor({ timeout: WAIT });
        await phone.page.locator(`${tid('campaign-link')}[data-campaign-id="${campaignId}"]`).waitFor({ timeout: WAIT });
        await shot(phone.page, '11-invite-link-phone');
        log('     LAN invite: QR shown, the link signed a fourth browser in as bob');
      } else {
        log('     LAN invite: QR shown (the link points at the gateway, which does not serve this build)');
      }
    } else {
      log('     LAN invite: this gateway has no /lan/invites (404): the button is hidden');
    }
    await shot(page, '11-gm-table');
    await fitsWidth(page, 'the GM table at 1280');
    await mobileShot(page, '11-gm-table');
    await page.evaluate(() => window.scrollTo(0, 0));
    // The README's picture is refreshed only on request, so a test run leaves the tree clean.
    await page.screenshot({ path: join(artifacts, 'table.png') });
    if (process.env.DLAB_UPDATE_DOCS === '1') {
      const docs = join(repo, 'docs');
      mkdirSync(docs, { recursive: true });
      await page.screenshot({ path: join(docs, 'table.png') });
    }
    await shot(p1.page, '11-player1-table-mobile');
  });

  await step('GM ends the session: a later action is refused and rolled back with a notice', async () => {
    await gm.page.click(tid('end-session'));
    await gm.page.click(tid('end-session-confirm'));
    await gm.page.locator(tid('gm-message')).filter({ hasText: 'ended' }).waitFor({ timeout: WAIT });
    // Player 1 still has the table open and tries to heal: the server refuses (session_ended).
    await p1.page.selectOption(tid('target'), await idOf('Goblin 2'));
    await p1.page.click(tid('heal'));
    await p1.page.locator(`${tid('notice')}[data-kind="rollback"]`).filter({ hasText: 'session_ended' }).waitFor({ timeout: WAIT });
    await until('player 1 to have nothing pending', async () => (await facts(p1.page)).pending === 0);
    await shot(p1.page, '12-player1-after-end');
  });

  await step('no page logged a console error', async () => {
    if (errors.length) throw new Error(`console errors:\n  ${errors.join('\n  ')}`);
  });
  void tableUrl;
}

let code = 0;
try {
  await main();
} catch (e) {
  if (!failed) {
    failed++;
    log(`FAIL setup: ${e.stack ?? e}`);
  }
  code = 1;
} finally {
  closing = true;
  for (const fn of cleanup) {
    try {
      await fn();
    } catch {
      // keep cleaning up
    }
  }
}
log(`${passed} passed, ${failed} failed`);
process.exit(code);

// End-to-end tests of `ferry ui` in headless Chromium, against a store the tests fill with
// real saves, persists and uploads (FERRY_TEST_STORE picks the store; local by default).
// Screenshots of each page are kept under output/<store>/.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { PROJECT, World, launchBrowser, screenshot, storeName, writeCaches } from './harness.js';

// A 1x1 PNG, so the report has an image of its own.
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC',
  'base64',
);
const HOSTILE_KEY = 'v3-<img src=x onerror="window.__pwned=1">';
const JUNIT = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="unit" tests="4">
    <testcase classname="app.Math" name="adds"/>
    <testcase classname="app.Math" name="divides by zero">
      <failure message="expected Infinity, got &lt;script&gt;alert(1)&lt;/script&gt;">at divide (math.js:12)</failure>
    </testcase>
    <testcase classname="app.Io" name="reads the config"><error message="ENOENT: config.toml"/></testcase>
    <testcase classname="app.Io" name="later"><skipped/></testcase>
  </testsuite>
</testsuites>
`;
const REPORT_HTML = `<!doctype html><html><head><link rel="stylesheet" href="style.css"></head>
<body><h1 id="title">Coverage report</h1><p>92.5% of lines covered</p><img src="logo.png" alt="logo">
<script>document.body.setAttribute('data-ran', 'yes'); try { parent.document.title = 'pwned'; } catch (e) {}</script>
</body></html>`;

const world = new World('main');
let browser;
let readOnly;
let deleting;
let layers;
let signing;
let trusted;
const blob = randomBytes(200 * 1024);
const enc = encodeURIComponent(PROJECT);

let expiringSince;

before(async () => {
  // An artifact that expires a second after upload: what prune would delete now.
  world.write({ 'old/old.txt': 'old\n' });
  world.ferry(['artifacts', 'upload', 'old/old.txt', '--run', 'r0', '--job', 'old', '--ttl', '1s']);
  expiringSince = Date.now();
  // Caches: sizes that sort apart, a named scope, a restore hit, a hostile key.
  world.write({
    'deps/big.bin': randomBytes(300 * 1024),
    'deps/small.txt': 'small\n',
    'mac/lib.bin': randomBytes(90 * 1024),
    'tools/t.txt': 'tool\n',
  });
  // One cache signed by the key the page's FERRY_TRUSTED_KEYS trusts.
  const keys = world.ferry(['keygen']);
  signing = keys.match(/FERRY_SIGNING_KEY=(\S+)/)[1];
  trusted = keys.match(/FERRY_TRUSTED_KEYS=(\S+)/)[1];
  world.ferry(['cache', 'save', '--key', 'v1-deps-linux-aaa', '--path', 'deps'], { env: { FERRY_SIGNING_KEY: signing } });
  world.ferry(['cache', 'save', '--key', 'v1-deps-macos-bbb', '--path', 'mac']);
  world.ferry(['cache', 'save', '--key', 'v2-tools-ccc', '--path', 'tools']);
  world.ferry(['cache', 'save', '--key', 'v1-pr-ddd', '--path', 'tools', '--scope', 'pr']);
  world.ferry(['cache', 'save', '--key', HOSTILE_KEY, '--path', 'tools']);
  world.ferry(['cache', 'restore', '--key', 'v1-deps-macos-bbb']);

  // Workspaces: checkout -> build, checkout -> docs, (build, docs) -> package; and a run
  // whose two jobs wrote the same path side by side.
  world.write({
    'ws/src/main.c': 'int main() {}\n',
    'ws/dist/app.js': 'console.log(1)\n',
    'ws/site/index.html': '<p>docs</p>\n',
    'ws/pkg/app.tar': 'pkg\n',
    'ws/out/x.txt': 'from a job\n',
  });
  const job = (name, cmd) => world.ferry(cmd, { env: { FERRY_WORKFLOW: 'wf-graph', FERRY_JOB: name } });
  job('checkout', ['workspace', 'persist', '--root', 'ws', '--path', 'src']);
  job('build', ['workspace', 'attach', '--at', 'att-build']);
  job('build', ['workspace', 'persist', '--root', 'ws', '--path', 'dist']);
  job('docs', ['workspace', 'attach', '--at', 'att-docs', '--from', 'checkout']);
  job('docs', ['workspace', 'persist', '--root', 'ws', '--path', 'site']);
  job('package', ['workspace', 'attach', '--at', 'att-pkg']);
  job('package', ['workspace', 'persist', '--root', 'ws', '--path', 'pkg']);
  for (const j of ['lint', 'test']) {
    world.ferry(['workspace', 'persist', '--root', 'ws', '--path', 'out'], {
      env: { FERRY_WORKFLOW: 'wf-clash', FERRY_JOB: j },
    });
  }
  layers = world.json(['workspace', 'ls', '--workflow', 'wf-graph']);

  // Artifacts: a text file, an HTML report with its style and image, a JUnit report, a blob.
  world.write({
    'a/notes.txt': 'Build 42 passed on the second try.\n<b>not bold</b>\n',
    'a/report/index.html': REPORT_HTML,
    'a/report/style.css': 'h1 { color: rgb(0, 128, 0); }\n',
    'a/report/logo.png': PNG,
    'a/junit.xml': JUNIT,
    'a/blob.bin': blob,
  });
  world.ferry(['artifacts', 'upload', 'a', '--run', 'r1', '--job', 'test']);

  readOnly = await world.startUi([], { FERRY_TRUSTED_KEYS: trusted });
  deleting = await world.startUi(['--allow-delete']);
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await readOnly?.stop();
  await deleting?.stop();
  world.cleanup();
});

async function open(server, rel) {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  const resp = await page.goto(new URL(rel, server.url).href);
  assert.equal(resp.status(), 200, `${rel}: ${resp.status()}`);
  page.jsErrors = errors;
  return page;
}

const keysOnPage = (page) => page.$$eval('#caches tbody tr', (rows) => rows.map((r) => r.getAttribute('data-key')));

describe(`ferry ui on the ${storeName} store`, () => {
  test('the cache list shows every cache and sorts by its columns', async () => {
    const page = await open(readOnly, `/p/${enc}/caches`);
    const shown = await keysOnPage(page);
    const listed = world.json(['cache', 'ls']).caches.map((c) => c.key);
    assert.deepEqual([...shown].sort(), [...listed].sort());
    assert.equal(shown.length, 5);
    // Newest first by default.
    assert.equal(shown[0], HOSTILE_KEY);
    const row = page.locator('#caches tr', { hasText: 'v1-pr-ddd' });
    assert.match(await row.innerText(), /\bpr\b/, 'the scope is shown');
    // Signature status: signed by the trusted key, or unsigned (and so skipped by a restore).
    const signed = page.locator('#caches tr[data-key="v1-deps-linux-aaa"]');
    assert.match(await signed.innerText(), /trusted ✓/);
    assert.match(await page.locator('#caches tr[data-key="v2-tools-ccc"]').innerText(), /unsigned ✗/);
    const used = page.locator('#caches tr', { hasText: 'v1-deps-macos-bbb' });
    assert.match(await used.innerText(), /ago/);
    assert.doesNotMatch(await used.innerText(), /never restored/);

    await page.click('a[data-sort="stored"]');
    await page.waitForURL(/sort=stored/);
    const bytes = await page.$$eval('#caches tbody td[data-bytes]', (tds) => tds.map((t) => Number(t.getAttribute('data-bytes'))));
    assert.deepEqual(bytes, [...bytes].sort((a, b) => b - a));
    assert.equal((await keysOnPage(page))[0], 'v1-deps-linux-aaa');
    await page.click('a[data-sort="stored"]');
    await page.waitForURL(/dir=asc/);
    const ascending = await page.$$eval('#caches tbody td[data-bytes]', (tds) => tds.map((t) => Number(t.getAttribute('data-bytes'))));
    assert.deepEqual(ascending, [...ascending].sort((a, b) => a - b));

    await page.click('a[data-sort="key"]');
    await page.waitForURL(/sort=key/);
    const byKey = await keysOnPage(page);
    assert.deepEqual(byKey, [...byKey].sort());

    await page.fill('#prefix', 'v1-deps-');
    await page.click('form.filter button[type=submit]');
    await page.waitForURL(/prefix=v1-deps-/);
    assert.deepEqual((await keysOnPage(page)).sort(), ['v1-deps-linux-aaa', 'v1-deps-macos-bbb']);
    assert.deepEqual(page.jsErrors, []);
    await page.close();
  });

  test('keys are shown as text, never as markup', async () => {
    const page = await open(readOnly, `/p/${enc}/caches`);
    await page.waitForSelector('#charts[data-loaded="true"]');
    assert.equal(await page.locator('#caches img').count(), 0);
    assert.equal(await page.evaluate(() => window.__pwned), undefined);
    assert.ok((await page.locator('#caches').innerText()).includes(HOSTILE_KEY));
    // The charts: bytes saved per day and stored bytes by key prefix (loaded after the page).
    assert.ok(await page.locator('#stored-per-day g.bar').count() >= 30);
    const prefixes = await page.locator('#by-prefix table.prefixes').innerText();
    assert.match(prefixes, /v1-deps-linux-/);
    await screenshot(page, 'caches');
    await page.close();
  });

  test('deleting is refused without --allow-delete', async () => {
    const page = await open(readOnly, `/p/${enc}/caches`);
    assert.equal(await page.locator('#delete-selected').count(), 0);
    assert.equal(await page.locator('input.pick').count(), 0);
    const resp = await page.request.post(new URL(`/p/${enc}/caches/delete`, readOnly.url).href, {
      form: { csrf: 'guess', entry: '|v2-tools-ccc' },
    });
    assert.equal(resp.status(), 403);
    assert.ok(world.json(['cache', 'ls']).caches.some((c) => c.key === 'v2-tools-ccc'));
    await page.close();
  });

  test('with --allow-delete a delete needs the page token', async () => {
    const page = await open(deleting, `/p/${enc}/caches`);
    const resp = await page.request.post(new URL(`/p/${enc}/caches/delete`, deleting.url).href, {
      form: { csrf: 'guess', entry: '|v2-tools-ccc' },
    });
    assert.equal(resp.status(), 403);
    assert.ok(world.json(['cache', 'ls']).caches.some((c) => c.key === 'v2-tools-ccc'));
    await page.close();
  });

  test('deleting caches with --allow-delete removes them from the store', async () => {
    const page = await open(deleting, `/p/${enc}/caches`);
    page.on('dialog', (d) => d.accept());
    await page.locator('#caches tr[data-key="v2-tools-ccc"] input.pick').check();
    await page.locator('#caches tr[data-key="v1-pr-ddd"] input.pick').check();
    await Promise.all([page.waitForURL(/deleted=2/), page.click('#delete-selected')]);
    const shown = await keysOnPage(page);
    assert.ok(!shown.includes('v2-tools-ccc') && !shown.includes('v1-pr-ddd'), shown.join(', '));
    const left = world.json(['cache', 'ls']).caches.map((c) => c.key);
    assert.ok(!left.includes('v2-tools-ccc') && !left.includes('v1-pr-ddd'), left.join(', '));
    assert.ok(left.includes('v1-deps-linux-aaa'));
    await screenshot(page, 'caches-after-delete');
    await page.close();
  });

  test("a run's layer graph shows every layer and edge", async () => {
    const page = await open(readOnly, `/p/${enc}/workspaces`);
    assert.ok(await page.locator('#runs tr[data-workflow="wf-graph"]').count() === 1);
    await page.click('#runs a:has-text("wf-graph")');
    await page.waitForSelector('#layer-graph');
    const drawn = await page.$$eval('#layer-graph [data-layer]', (g) => g.map((n) => n.getAttribute('data-layer')));
    assert.deepEqual([...drawn].sort(), layers.layers.map((l) => l.id).sort());
    const edges = await page.$$eval('#layer-graph path.edge', (p) => p.map((e) => e.getAttribute('data-edge')));
    const expected = layers.layers.flatMap((l) => l.parents.map((p) => `${p}->${l.id}`));
    assert.equal(expected.length, 5, 'build 1, docs 1, package 3 parents');
    assert.deepEqual([...edges].sort(), [...expected].sort());
    // Parents are drawn left of their children.
    const x = Object.fromEntries(await page.$$eval('#layer-graph g.node', (g) => g.map((n) => [n.getAttribute('data-layer'), n.getBoundingClientRect().x])));
    for (const e of expected) {
      const [p, c] = e.split('->');
      assert.ok(x[p] < x[c], `${e} drawn right to left`);
    }
    // Each layer's files.
    const pkg = layers.layers.find((l) => l.job === 'package');
    await page.click(`#layer-graph g.node[data-layer="${pkg.id}"]`);
    // The link opens the layer's file list (on the hash change).
    await page.waitForSelector(`details[id="layer-${pkg.id}"][open]`);
    assert.match(await page.locator(`[id="layer-${pkg.id}"]`).innerText(), /pkg\/app\.tar/);
    assert.equal(await page.locator('#conflicts').count(), 0);
    await screenshot(page, 'workspace-graph');
    await page.close();
  });

  test('clashing layers show exactly the paths attach refuses', async () => {
    const refused = world.ferryFails(['workspace', 'attach', '--at', 'att-clash', '--workflow', 'wf-clash']);
    assert.equal(refused.status, 4);
    const page = await open(readOnly, `/p/${enc}/workspaces/wf-clash`);
    const paths = await page.$$eval('#conflicts tr[data-path]', (r) => r.map((x) => x.getAttribute('data-path')));
    assert.deepEqual(paths, ['out/x.txt']);
    assert.ok(refused.stderr.includes('out/x.txt'));
    assert.equal(await page.locator('#layer-graph g.node.clash').count(), 2);
    await screenshot(page, 'workspace-clash');
    await page.close();
  });

  test("an artifact's preview shows its text", async () => {
    const page = await open(readOnly, `/p/${enc}/artifacts`);
    await page.click('#runs a.job:has-text("test")');
    await page.waitForSelector('#tree');
    await page.click('#tree a:has-text("a/")');
    await page.waitForURL(/dir=a/);
    const row = page.locator('#tree tr.file[data-path="a/blob.bin"]');
    assert.match(await row.innerText(), /200\.0 KiB/);
    assert.match(await row.innerText(), /0644/);
    await screenshot(page, 'artifacts');
    await page.click('#tree a.view:has-text("notes.txt")');
    await page.waitForSelector('#text');
    assert.equal((await page.locator('#text').textContent()).trim(), 'Build 42 passed on the second try.\n<b>not bold</b>');
    assert.equal(await page.locator('#preview b').count(), 0);
    await screenshot(page, 'artifact-text');
    await page.close();
  });

  test('an HTML report renders in a sandboxed frame, its scripts not run', async () => {
    const page = await open(readOnly, `/p/${enc}/artifacts/r1/test/file?path=a%2Freport%2Findex.html`);
    const frameEl = page.locator('iframe#report');
    assert.equal(await frameEl.getAttribute('sandbox'), '');
    const src = await frameEl.getAttribute('src');
    const raw = await page.request.get(new URL(src, readOnly.url).href);
    assert.match(raw.headers()['content-security-policy'], /^sandbox;/);
    const frame = page.frameLocator('iframe#report');
    await frame.locator('#title').waitFor();
    assert.equal(await frame.locator('#title').innerText(), 'Coverage report');
    // Its own stylesheet (a sibling file) applied; its script did not run.
    assert.equal(await frame.locator('#title').evaluate((e) => getComputedStyle(e).color), 'rgb(0, 128, 0)');
    assert.equal(await frame.locator('body').getAttribute('data-ran'), null);
    assert.notEqual(await page.title(), 'pwned');
    await screenshot(page, 'artifact-html');
    await page.close();
  });

  test("a JUnit file's failures are listed", async () => {
    const page = await open(readOnly, `/p/${enc}/artifacts/r1/test/file?path=a%2Fjunit.xml`);
    await page.waitForSelector('#junit');
    const totals = await page.locator('#junit .totals').innerText();
    assert.match(totals, /4 tests/);
    assert.match(totals, /1 failures/);
    assert.match(totals, /1 errors/);
    assert.match(totals, /1 skipped/);
    const failing = await page.$$eval('#junit li.failure', (l) => l.map((x) => x.getAttribute('data-case')));
    assert.deepEqual(failing, ['divides by zero', 'reads the config']);
    const first = await page.locator('#junit li.failure').first().innerText();
    assert.ok(first.includes('expected Infinity, got <script>alert(1)</script>'), first);
    assert.equal(await page.locator('#junit script').count(), 0);
    await screenshot(page, 'artifact-junit');
    await page.close();
  });

  test("a download link returns the file's bytes", async () => {
    const page = await open(readOnly, `/p/${enc}/artifacts/r1/test/file?path=a%2Fblob.bin`);
    const href = await page.locator('#download').getAttribute('href');
    const resp = await page.request.get(new URL(href, readOnly.url).href);
    assert.equal(resp.status(), 200);
    const body = await resp.body();
    assert.equal(body.length, blob.length);
    assert.ok(body.equals(blob), 'the downloaded bytes are the uploaded ones');
    const sha = await page.locator('#sha256').innerText();
    assert.equal(sha, (await import('node:crypto')).createHash('sha256').update(blob).digest('hex'));
    await page.close();
  });

  test('usage shows bytes per mode and project and what prune would delete', async () => {
    // The artifact's one-second retention has run out (setting up took longer already).
    await new Promise((r) => setTimeout(r, Math.max(0, expiringSince + 1500 - Date.now())));
    const page = await open(readOnly, `/p/${enc}/usage`);
    for (const mode of ['caches', 'workspaces', 'artifacts']) {
      assert.equal(await page.locator(`#by-mode tr[data-mode="${mode}"]`).count(), 1, mode);
    }
    assert.equal(await page.locator(`#by-project tr[data-project="${PROJECT}"]`).count(), 1);
    await page.waitForSelector('#prune[data-loaded="true"]');
    assert.match(await page.locator('#prune-summary').innerText(), /^1 to delete/);
    const plan = await page.locator('#prune table.prune').innerText();
    assert.match(plan, /expired\s+artifact\s+old\/old\.txt \(run r0 job old\)/);
    // Nothing was deleted.
    assert.equal(world.json(['artifacts', 'ls', '--run', 'r0', '--job', 'old']).artifacts.length, 1);
    assert.match(await page.locator('#packs').innerText(), /no chunked entries/);
    await screenshot(page, 'usage');
    await page.close();
  });

  test('the page loads nothing from elsewhere', async () => {
    const page = await browser.newPage();
    const foreign = [];
    page.on('request', (r) => {
      if (!r.url().startsWith(readOnly.url.replace(/\/$/, '')) && !r.url().startsWith('data:')) foreign.push(r.url());
    });
    for (const rel of [`/p/${enc}/caches`, `/p/${enc}/workspaces/wf-graph`, `/p/${enc}/artifacts/r1/test/file?path=a%2Freport%2Findex.html`, `/p/${enc}/usage`]) {
      await page.goto(new URL(rel, readOnly.url).href, { waitUntil: 'networkidle' });
    }
    // Cloud stores' pre-signed links are followed only on download, never by a page.
    assert.deepEqual(foreign, []);
    await page.close();
  });
});

describe('access beyond loopback', () => {
  test('needs the printed token on every request', async () => {
    const wide = await world.startUi(['--listen', '0.0.0.0:0']);
    try {
      const url = new URL(wide.url);
      const token = url.searchParams.get('token');
      assert.match(token, /^[0-9a-f]{64}$/);
      const bare = `${url.origin}/p/${enc}/caches`;
      assert.equal((await fetch(bare)).status, 401);
      assert.equal((await fetch(`${bare}?token=wrong`)).status, 401);
      const ok = await fetch(`${bare}?token=${token}`);
      assert.equal(ok.status, 200);
      const cookie = ok.headers.get('set-cookie').split(';')[0];
      assert.equal((await fetch(bare, { headers: { cookie } })).status, 200);
    } finally {
      await wide.stop();
    }
  });

  test('on loopback, requests for another host name are refused', async () => {
    const url = new URL(readOnly.url);
    const { request } = await import('node:http');
    const status = await new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: url.port, path: '/', headers: { host: 'attacker.example' } }, (res) => {
        res.resume();
        resolve(res.statusCode);
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 421);
  });
});

// How fast the first page draws is measured by bench/ (the lookup lane), not asserted here.
describe('a large store', { skip: storeName !== 'local' && 'the 10,000 caches are written on the local store' }, () => {
  test('pages a store of 10,000 caches fifty at a time, filtered and sorted', async () => {
    const big = new World('big');
    let server;
    try {
      writeCaches(big.localStore, PROJECT, 10000);
      server = await big.startUi();
      const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
      // Once to load the page's stylesheet and script, then timed. Each page's charts (which
      // read every manifest) load after it is drawn; they are awaited between the timings so
      // that one page's charts do not run under the next page's clock.
      await page.goto(new URL(`/p/${enc}/caches`, server.url).href);
      await page.waitForSelector('#charts[data-loaded="true"]', { timeout: 60000 });
      const timings = [];
      for (const rel of [`/p/${enc}/caches`, `/p/${enc}/caches?sort=key&dir=asc`, `/p/${enc}/caches?prefix=v1-bulk-macos-`]) {
        const t0 = performance.now();
        const resp = await page.goto(new URL(rel, server.url).href, { waitUntil: 'load' });
        timings.push(performance.now() - t0);
        assert.equal(resp.status(), 200);
        await page.waitForSelector('#charts[data-loaded="true"]', { timeout: 60000 });
      }
      console.log(`first page of 10,000 caches: ${timings.map((t) => `${t.toFixed(0)} ms`).join(', ')}`);
      assert.equal(await page.locator('#caches tbody tr').count(), 50);
      assert.match(await page.locator('p.summary').innerText(), /3333 caches/);
      fs.writeFileSync(path.join(big.root, 'timing.txt'), timings.join('\n'));
      await screenshot(page, 'caches-10k');
      await page.close();
    } finally {
      await server?.stop();
      big.cleanup();
    }
  });
});

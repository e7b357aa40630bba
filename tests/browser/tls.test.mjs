// HTTPS and HTTP/2 in a real browser (issue 14 item 3): browsers speak HTTP/2 only over
// TLS, and over HTTP/1.1 they open at most six connections per origin. The demo is
// started with TLS_CERT/TLS_KEY from a self-signed certificate made here (openssl),
// headless Chromium (--ignore-certificate-errors) opens ten EventSources from one page:
// over HTTPS all ten stream at once, over HTTP/2, on the connection the page already
// had (the demo's demo_connections_accepted_total does not move); the same page over
// plain HTTP/1.1 stalls: six stream, four get nothing while those six are open.
// Run by scripts/test.sh (`node --test tests/browser/*.test.mjs`), which installs openssl.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startDemo } from './demo-server.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--ignore-certificate-errors'];

let browser;
let dir;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'tower-sse-tls-'));
  try {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
      '-nodes', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-days', '1',
      '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'pipe' });
  } catch (err) {
    throw new Error(`making the self-signed certificate failed (scripts/test.sh installs openssl): ${err.message}`);
  }
});
after(async () => {
  await browser?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function launch() {
  if (browser) return browser;
  try {
    accessSync(CHROMIUM, constants.X_OK);
  } catch {
    throw new Error(`no Chromium at ${CHROMIUM}: scripts/test.sh installs Debian's chromium package`);
  }
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
  return browser;
}

/**
 * The page's script: reads the server's accepted connections, opens ten EventSources on
 * endless tick streams, waits until all ten have 3 ticks or six have 30 (bounded), then
 * closes them and reads the count again. Returns the ticks of each, the first event's
 * data, and the protocol of each from the Performance API.
 */
async function tenEventSources() {
  const accepted = async () => {
    const text = await (await fetch('/metrics')).text();
    return Number(/^demo_connections_accepted_total (\d+)$/m.exec(text)?.[1]);
  };
  const before = await accepted();
  const urls = Array.from({ length: 10 }, (_, i) => `/events?count=1000000&interval_ms=100&source=${i}`);
  const ticks = urls.map(() => 0);
  const first = urls.map(() => null);
  const seen = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out; ticks ${JSON.stringify(ticks)}`)), 60_000);
    const sources = urls.map((url, i) => {
      const source = new EventSource(url);
      source.addEventListener('tick', (e) => {
        ticks[i] += 1;
        first[i] ??= e.data;
        const allTen = ticks.every((n) => n >= 3);
        const sixLong = ticks.filter((n) => n >= 30).length >= 6;
        if (allTen || sixLong) {
          clearTimeout(timer);
          const snapshot = [...ticks];
          sources.forEach((s) => s.close());
          resolve(snapshot);
        }
      });
      return source;
    });
  });
  // A stream's resource timing entry appears once it is closed: wait for all ten.
  const entry = (url) => performance.getEntriesByType('resource')
    .find((e) => e.name === new URL(url, location.href).href);
  for (let waited = 0; !urls.every(entry); waited += 50) {
    if (waited > 20_000) throw new Error('no resource timing entries for the ten streams');
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  const protocols = urls.map((url) => entry(url).nextHopProtocol);
  return { before, after: await accepted(), ticks: seen, first, protocols };
}

async function openPage(t, demo) {
  const context = await (await launch()).newContext();
  t.after(() => context.close());
  const page = await context.newPage();
  const nav = await page.goto(`${demo.url}/health`);
  assert.equal(nav.status(), 200);
  return page;
}

async function withDemo(t, env) {
  const demo = await startDemo({ env });
  t.after(async () => {
    const status = await demo.stop();
    assert.equal(status.code, 0, `demo exited with ${JSON.stringify(status)} on SIGTERM`);
  });
  return demo;
}

test('over HTTPS ten EventSources stream at once over one HTTP/2 connection', async (t) => {
  const demo = await withDemo(t, { TLS_CERT: join(dir, 'cert.pem'), TLS_KEY: join(dir, 'key.pem') });
  assert.match(demo.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  const page = await openPage(t, demo);
  const result = await page.evaluate(tenEventSources);
  t.diagnostic(JSON.stringify(result));
  assert.ok(result.ticks.every((n) => n >= 3), `all ten streamed: ${JSON.stringify(result.ticks)}`);
  assert.deepEqual(result.first.map((d) => JSON.parse(d).n), Array(10).fill(1));
  assert.deepEqual(result.protocols, Array(10).fill('h2'));
  // The page's own connection carried all ten and the two fetches: none was opened.
  assert.ok(result.before >= 1, `the page's connection was counted: ${result.before}`);
  assert.equal(result.after, result.before, 'no connection opened for the ten streams');
});

test('over plain HTTP/1.1 the same page stalls: six stream, four wait', async (t) => {
  const demo = await withDemo(t, {});
  assert.match(demo.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const page = await openPage(t, demo);
  const result = await page.evaluate(tenEventSources);
  t.diagnostic(JSON.stringify(result));
  const streamed = result.ticks.filter((n) => n > 0);
  assert.equal(streamed.length, 6, `six of ten streamed: ${JSON.stringify(result.ticks)}`);
  assert.ok(streamed.every((n) => n >= 30), JSON.stringify(result.ticks));
  result.ticks.forEach((n, i) => {
    if (n > 0) assert.equal(result.protocols[i], 'http/1.1');
  });
  // One connection per open stream: at least five more than the page had.
  assert.ok(result.after - result.before >= 5, `connections: ${result.before} -> ${result.after}`);
});

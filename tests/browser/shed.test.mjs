// The shed answer read by a real browser: the demo with MAX_STREAMS=1 (and, apart,
// MAX_STREAMS_PER_CLIENT=1) sheds a second EventSource with 200 + `retry: R` + end;
// Chromium's EventSource honours it (it stays CONNECTING, never CLOSED), and once the
// first stream is closed it reconnects by itself after R and streams events.
// Run by scripts/test.sh (`node --test tests/browser/*.test.mjs`).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { accessSync, constants } from 'node:fs';
import { chromium } from 'playwright-core';
import { startDemo } from './demo-server.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const FIRST = '/events?count=1000000&interval_ms=200';
const SECOND = '/events?count=1000000&interval_ms=100';

let browser;
after(async () => { await browser?.close(); });

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

/** Requests the page made for `path` (query included), in order. */
function requestsFor(requests, path) {
  return requests.filter(({ request }) => {
    const url = new URL(request.url());
    return url.pathname + url.search === path;
  });
}

for (const cap of ['MAX_STREAMS', 'MAX_STREAMS_PER_CLIENT']) {
  test(`${cap}=1: a shed EventSource reconnects by itself after its retry and then streams`, async (t) => {
    const demo = await startDemo({ env: { [cap]: '1' } });
    t.after(async () => {
      const status = await demo.stop();
      assert.equal(status.code, 0, `demo exited with ${JSON.stringify(status)} on SIGTERM`);
    });
    const context = await (await launch()).newContext();
    t.after(() => context.close());
    const page = await context.newPage();
    const requests = [];
    page.on('request', (request) => requests.push({ request }));
    assert.equal((await page.goto(`${demo.url}/health`)).status(), 200);

    const log = await page.evaluate(
      ([first, second]) =>
        new Promise((resolve, reject) => {
          const log = [];
          const t0 = performance.now();
          const note = (entry) => log.push({ ...entry, at: Math.round(performance.now() - t0) });
          const timer = setTimeout(() => reject(new Error(`timed out; log ${JSON.stringify(log)}`)), 40_000);
          const a = new EventSource(first);
          a.addEventListener('tick', () => {
            if (log.some((x) => x.who === 'a')) return;
            note({ who: 'a', kind: 'tick' });
            // The one stream is held: open the second, which is shed.
            const b = new EventSource(second);
            b.onopen = () => note({ who: 'b', kind: 'open' });
            b.onerror = () => {
              note({ who: 'b', kind: 'error', state: b.readyState });
              // Shed once: let the first go, so the second finds room when it comes back.
              if (a.readyState !== EventSource.CLOSED) { a.close(); note({ who: 'a', kind: 'closed' }); }
            };
            b.addEventListener('tick', (e) => {
              note({ who: 'b', kind: 'tick', data: e.data });
              if (log.filter((x) => x.who === 'b' && x.kind === 'tick').length >= 3) {
                clearTimeout(timer); b.close(); resolve(log);
              }
            });
          });
        }),
      [FIRST, SECOND],
    );
    t.diagnostic(JSON.stringify(log));
    const b = log.filter((x) => x.who === 'b');
    // The shed answer: a 200 that opens, then ends at once; the browser keeps
    // reconnecting (readyState CONNECTING = 0), never gives up (CLOSED = 2).
    assert.deepEqual(b.slice(0, 2).map((x) => x.kind), ['open', 'error'], JSON.stringify(log));
    assert.ok(b.filter((x) => x.kind === 'error').every((x) => x.state === 0), JSON.stringify(log));
    // Then, by itself, a connection that streams.
    const ticks = b.filter((x) => x.kind === 'tick');
    assert.equal(ticks.length, 3);
    assert.deepEqual(ticks.map((x) => JSON.parse(x.data).n), [1, 2, 3]);

    // The shed request was followed by exactly one more, made by the browser itself
    // once the first stream had let go (order and count; the delay is only logged).
    const sent = requestsFor(requests, SECOND);
    assert.equal(sent.length, 2, `the browser reconnected by itself, once (requests: ${sent.length})`);
    const responses = await Promise.all(sent.map(({ request }) => request.response()));
    const shed = responses[0];
    assert.equal(shed.status(), 200);
    assert.match(shed.headers()['content-type'], /^text\/event-stream/);
    const body = await shed.text();
    const retry = Number(/^retry: (\d+)\n\n$/.exec(body)?.[1]);
    assert.ok(retry >= 1000, `one retry of at least 1000 ms: ${JSON.stringify(body)}`);
    const reopened = log.indexOf(b.filter((x) => x.kind === 'open')[1]);
    const released = log.findIndex((x) => x.who === 'a' && x.kind === 'closed');
    assert.ok(released >= 0 && released < reopened, `reconnected after the first let go: ${JSON.stringify(log)}`);
    // Timed in the page, for the log only (RELIABILITY.md records the figure).
    t.diagnostic(`shed with retry: ${retry} ms; the browser came back after ${log[reopened].at - b[1].at} ms`);
  });
}

// The demo's GET / page (examples/demo_page.html) clicked through in headless Chromium,
// as a newcomer would: the /metrics numbers show up and move, a message published from
// the page appears in every pane subscribed to its topic and in no other, and the "cut"
// button ends a pane's stream on the server, after which the browser's own EventSource
// comes back with Last-Event-ID and the ids go on with no gap and no repeat. Run by
// scripts/test.sh (`node --test tests/browser/*.test.mjs`); a screenshot of the page is
// left in a temporary directory (its path is printed as a diagnostic).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { accessSync, constants, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { startDemo } from './demo-server.mjs';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];
/** Every wait of this file is bounded by this (the browser reconnects after ~3 s). */
const WAIT = { timeout: 20_000 };

let demo;
let browser;

before(async () => {
  try {
    accessSync(CHROMIUM, constants.X_OK);
  } catch {
    throw new Error(`no Chromium at ${CHROMIUM}: scripts/test.sh installs Debian's chromium package`);
  }
  demo = await startDemo();
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  const status = await demo?.stop();
  if (status) assert.equal(status.code, 0, `demo exited with ${JSON.stringify(status)} on SIGTERM`);
});

/** The demo's page in a fresh context, laptop-sized, with every request it makes. */
async function openPage(t) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  t.after(() => context.close());
  const page = await context.newPage();
  const requests = [];
  page.on('request', (request) => requests.push(request));
  const errors = [];
  page.on('pageerror', (err) => errors.push(err.message));
  t.after(() => assert.deepEqual(errors, [], 'the page threw'));
  const response = await page.goto(`${demo.url}/`);
  assert.equal(response.status(), 200);
  return { page, requests };
}

const pane = (name) => `section[data-pane="${name}"]`;

async function paneText(page, name) {
  return page.innerText(`${pane(name)} .log`);
}

/** Publishes `message` to `topic` with the page's form; returns the status it shows. */
async function publish(page, topic, message) {
  await page.selectOption('#topic', topic);
  await page.fill('#message', message);
  const answer = page.waitForResponse((res) => new URL(res.url()).pathname === '/publish', WAIT);
  await page.click('#publish button[type=submit]');
  assert.equal((await answer).status(), 204);
  await page.waitForFunction(
    (topic) => document.getElementById('publish-state').textContent.startsWith(`POST /publish?topic=${topic}: 204`),
    topic,
    WAIT,
  );
}

async function waitForText(page, name, text) {
  await page.waitForFunction(
    ([selector, text]) => document.querySelector(selector).innerText.includes(text),
    [`${pane(name)} .log`, text],
    WAIT,
  );
}

/** Clicks a pane's cut button; returns the status of its `POST /cut`. */
async function cut(page, name) {
  const answer = page.waitForResponse((res) => new URL(res.url()).pathname === '/cut', WAIT);
  await page.click(`${pane(name)} button.cut`);
  return (await answer).status();
}

/** The pane's resume line once it reads `resumed from id X: next id Y, N missed`. */
async function resumed(page, name) {
  const selector = `${pane(name)} .resume`;
  await page.waitForFunction(
    (selector) => /^resumed from id /.test(document.querySelector(selector).textContent),
    selector,
    WAIT,
  );
  const line = await page.textContent(selector);
  const m = /^resumed from id (\S+): next id (\S+), (\S+) missed$/.exec(line);
  assert.ok(m, `resume line: ${JSON.stringify(line)}`);
  return { line, from: m[1], next: m[2], missed: m[3] };
}

/** The /fanout requests of a pane, with their Last-Event-ID headers. */
async function paneRequests(requests, name) {
  const mine = requests.filter((r) => {
    const url = new URL(r.url());
    return url.pathname === '/fanout' && (url.searchParams.get('pane') ?? '').endsWith(`-${name}`);
  });
  return Promise.all(mine.map(async (r) => ({ url: r.url(), lastEventId: (await r.allHeaders())['last-event-id'] })));
}

test('the page shows the /metrics numbers, and they change', async (t) => {
  const { page, requests } = await openPage(t);
  // The page holds five streams: /events, and four /fanout panes.
  await page.waitForFunction(() => Number(document.querySelector('#m-open .value').textContent) >= 5, null, WAIT);
  const eventsPerSecond = '#m-events .value';
  await page.waitForFunction((s) => Number(document.querySelector(s).textContent) > 0, eventsPerSecond, WAIT);
  const total = await page.textContent('#m-events .total');
  assert.match(total, /^total \d/);
  await page.waitForFunction((before) => document.querySelector('#m-events .total').textContent !== before, total, WAIT);
  const cards = await page.$$eval('#metrics .card', (cards) =>
    cards.map((c) => [c.querySelector('.label').textContent, c.querySelector('.value').textContent]),
  );
  t.diagnostic(`metrics cards: ${JSON.stringify(cards)}; events total went from ${total} to ${await page.textContent('#m-events .total')}`);
  assert.deepEqual(cards.map(([label]) => label), [
    'open streams', 'events / s', 'heartbeats / s', 'bytes / s', 'shed requests', 'dropped events',
  ]);
  for (const [label, value] of cards) assert.match(value, /^\d+(\.\d+)?( [kM]| B| [KM]iB)?$/, `${label}: ${value}`);
  assert.equal(cards[4][1], '0', 'nothing shed');
  assert.equal(cards[5][1], '0', 'nothing dropped');
  assert.ok(requests.filter((r) => new URL(r.url()).pathname === '/metrics').length >= 2, 'polled /metrics');
  // The hub's subscribers per topic, from sse_hub_subscribers.
  await page.waitForFunction(() => /news 2/.test(document.getElementById('subscribers').textContent), null, WAIT);
  assert.match(await page.textContent('#subscribers'), /fanout 1 · news 2 · sports 2/);
});

test('a message published from the page appears in every pane of its topic and in no other', async (t) => {
  const { page } = await openPage(t);
  for (const name of ['news', 'news-sports', 'sports', 'ticks']) {
    await page.waitForFunction((s) => document.querySelector(s).textContent === 'open', `${pane(name)} .state`, WAIT);
  }
  const news = `news ${Date.now()} ünïcødé <b>not html</b>`;
  await publish(page, 'news', news);
  await waitForText(page, 'news', news);
  await waitForText(page, 'news-sports', news);
  // A later message to sports: once it is in the sports pane, the news one would have been too.
  const sports = `sports ${Date.now()}`;
  await publish(page, 'sports', sports);
  await waitForText(page, 'sports', sports);
  await waitForText(page, 'news-sports', sports);
  assert.ok(!(await paneText(page, 'sports')).includes(news), 'the sports pane got the news message');
  assert.ok(!(await paneText(page, 'ticks')).includes(news), 'the ticker pane got the news message');
  assert.ok(!(await paneText(page, 'news')).includes(sports), 'the news pane got the sports message');
  // Newest first: in the two-topic pane the sports message is above the news one.
  const both = await paneText(page, 'news-sports');
  assert.ok(both.indexOf(sports) < both.indexOf(news), both);
  assert.match(both, new RegExp(`#0 sports ${sports}`));
  assert.equal(await page.locator(`${pane('news')} .msg b`).count(), 0, 'data shown as text, not HTML');
});

test('cut: the server ends the stream, the browser resumes it with Last-Event-ID, no gap, no repeat', async (t) => {
  const { page, requests } = await openPage(t);
  // The ticker pane: the default topic, a tick every 100 ms.
  await page.waitForFunction(() => window.demo.panes.get('ticks').ids.length >= 5, null, WAIT);
  assert.equal(await cut(page, 'ticks'), 204);
  const ticks = await resumed(page, 'ticks');
  t.diagnostic(`ticker pane: ${ticks.line}`);
  assert.equal(Number(ticks.next), Number(ticks.from) + 1, ticks.line);
  assert.equal(ticks.missed, '0');
  // Twenty more ids, then the whole list: consecutive, each once.
  const upTo = Number(ticks.next) + 20;
  await page.waitForFunction((n) => window.demo.panes.get('ticks').ids.map(Number).includes(n), upTo, WAIT);
  const ids = (await page.evaluate(() => window.demo.panes.get('ticks').ids)).map(Number);
  ids.forEach((id, i) => i === 0 || assert.equal(id, ids[i - 1] + 1, `ids ${ids.slice(Math.max(0, i - 3), i + 3)}`));
  assert.ok(ids.includes(Number(ticks.from)) && ids.includes(upTo));
  assert.match(await page.textContent(`${pane('ticks')} footer`), / 0 missed · 0 repeated/);
  assert.match(await page.textContent(`${pane('ticks')} footer`), new RegExp(`ids: .*${ticks.from} ↻ ${ticks.next} `));
  // The reconnection is the browser's own, on the same URL, and it sent the last id.
  const sent = await paneRequests(requests, 'ticks');
  assert.equal(sent.length, 2, JSON.stringify(sent));
  assert.equal(sent[0].url, sent[1].url);
  assert.equal(sent[0].lastEventId, undefined);
  assert.equal(sent[1].lastEventId, ticks.from);

  // A topic pane: a message, the cut, a message published while the pane is away.
  await publish(page, 'news', 'before the cut');
  await waitForText(page, 'news', 'before the cut');
  assert.equal(await cut(page, 'news'), 204);
  t.diagnostic(`news pane when publishing: ${await page.textContent(`${pane('news')} .state`)}`);
  await publish(page, 'news', 'while cut');
  await waitForText(page, 'news', 'while cut');
  const news = await resumed(page, 'news');
  t.diagnostic(`news pane: ${news.line}`);
  assert.equal(news.missed, '0');
  const newsSent = await paneRequests(requests, 'news');
  assert.equal(newsSent.length, 2, JSON.stringify(newsSent));
  assert.equal(newsSent[1].lastEventId, news.from, 'the reconnection sent the id of "before the cut"');
  assert.match(await page.textContent(`${pane('news')} footer`), /2 events · 0 missed · 0 repeated/);
  // "while cut" is in the news pane once: replayed or live, never both.
  assert.equal((await paneText(page, 'news')).split('while cut').length - 1, 1);

  const dir = mkdtempSync(join(tmpdir(), 'tower-sse-demo-page-'));
  const shot = join(dir, 'demo-page.png');
  await page.screenshot({ path: shot });
  t.diagnostic(`screenshot: ${shot}`);
});

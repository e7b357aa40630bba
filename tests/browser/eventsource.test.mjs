// The demo server read by Node's `eventsource` npm package (a WHATWG EventSource over
// fetch). Run by scripts/test.sh (`node --test tests/browser/*.test.mjs`).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { EventSource } from 'eventsource';
import { startDemo } from './demo-server.mjs';

let demo;

before(async () => {
  demo = await startDemo();
});

after(async () => {
  const status = await demo?.stop();
  if (status) assert.equal(status.code, 0, `demo exited with ${JSON.stringify(status)} on SIGTERM`);
});

/**
 * Opens an EventSource on `path`, records `types` events (and unnamed `message` ones),
 * and resolves once the response has ended (the client's `error`, it would reconnect
 * next) with at least `count` events; the source is closed then, so it never reconnects.
 */
function read(path, { count, types = [] }) {
  return new Promise((resolve, reject) => {
    const events = [];
    const opens = [];
    const source = new EventSource(new URL(path, demo.url));
    const timer = setTimeout(() => {
      source.close();
      reject(new Error(`timed out on ${path}; got ${JSON.stringify(events)}`));
    }, 10_000);
    const record = (e) => events.push({ type: e.type, id: e.lastEventId, data: e.data });
    source.onmessage = record;
    for (const type of types) source.addEventListener(type, record);
    source.onopen = () => opens.push(source.readyState);
    source.onerror = (err) => {
      clearTimeout(timer);
      source.close();
      if (events.length >= count) resolve({ events, opens });
      else reject(new Error(`error on ${path} after ${JSON.stringify(events)}: ${err.message ?? err.code ?? err}`));
    };
  });
}

test('eventsource reads /events?count=5: ids 1..5, type tick, data {"n":i}, in order', async () => {
  const { events, opens } = await read('/events?count=5', { count: 5, types: ['tick'] });
  assert.deepEqual(opens, [EventSource.OPEN], 'one connection');
  const want = [1, 2, 3, 4, 5].map((i) => ({ type: 'tick', id: String(i), data: `{"n":${i}}` }));
  assert.deepEqual(events, want);
});

test('eventsource reads /events?count=3&interval_ms=50 (events spread over time)', async () => {
  const { events } = await read('/events?count=3&interval_ms=50', { count: 3, types: ['tick'] });
  assert.deepEqual(events.map((e) => [e.id, JSON.parse(e.data)]), [['1', { n: 1 }], ['2', { n: 2 }], ['3', { n: 3 }]]);
});

test('eventsource reassembles /multiline exactly', async () => {
  const { events } = await read('/multiline', { count: 2 });
  assert.deepEqual(events.map((e) => e.type), ['message', 'message']);
  assert.deepEqual(events.map((e) => e.data), ['line one\nline two\nline three', 'a\nb\nc']);
});

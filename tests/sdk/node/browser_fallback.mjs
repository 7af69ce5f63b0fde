// centrifuge-js (its browser bundle) in a real headless Chromium, on gyre's own page, falling
// back from WebSocket to the HTTP-streaming transports when the browser lacks what they need.
//
// The page is gyre's demo page at `/` (same origin as every endpoint: no CORS involved); the
// SDK's UMD bundle is injected with `addScriptTag`. The client lists the transports
// `[websocket, http_stream, sse]` and connects with a token of user `page`; what the page lacks
// is set by `--case`, before any script of the page runs:
// - `websocket`: nothing removed, the SDK must use WebSocket;
// - `http_stream`: `window.WebSocket` deleted;
// - `sse`: `window.WebSocket` and `window.ReadableStream` deleted (no fetch streaming for the
//   SDK either).
// The page subscribes to `--channel`, receives a publication of the HTTP API, then publishes
// itself; a Node client (over `ws`, user `node`) subscribed to the channel must see that one.
//
// Arguments: --url --secret --api --api-key --case --channel [--chromium PATH] [--timeout]
// Result: {case, page: [what the page's client recorded, in order], node: [publications the Node
// client received], requests: ["METHOD path" of every request of the page to gyre],
// websockets: [paths of the WebSockets the page opened], apiPublished: {offset, epoch}}
import { fileURLToPath } from 'node:url';
import { main, need, log, Recorder, newClient, newSub, connToken, apiPublish, sleep, launchChromium } from './lib.mjs';

// The UMD build (global `Centrifuge`); not among the package's exports, so by its path.
const bundle = fileURLToPath(new URL('./node_modules/centrifuge/dist/centrifuge.js', import.meta.url));

/** What `--case` removes from the page. */
const REMOVED = {
  websocket: [],
  http_stream: ['WebSocket'],
  sse: ['WebSocket', 'ReadableStream'],
};

main('browser_fallback', async ({ args, result, sdk }) => {
  const url = need(args, 'url');
  const secret = need(args, 'secret');
  const channel = need(args, 'channel');
  const which = need(args, 'case');
  const removed = REMOVED[which];
  if (!removed) throw new Error(`--case must be one of ${Object.keys(REMOVED).join(', ')}`);
  result.case = which;
  const origin = url.replace(/^ws/, 'http').replace(/\/connection\/websocket$/, '');

  // The other side: a Node client over `ws`.
  const rec = new Recorder();
  const node = newClient(sdk, url, rec, 'node', { token: connToken(secret, 'node') });
  const nodeSub = newSub(node, rec, 'node', channel);
  result.node = rec.pubsOf('node', channel);
  node.connect();
  nodeSub.subscribe();
  await rec.subscribed('node', channel);

  const browser = await launchChromium(args);
  try {
    const page = await browser.newPage();
    result.page = [];
    result.requests = [];
    result.websockets = [];
    page.on('console', msg => log(`page console ${msg.type()}: ${msg.text()}`));
    page.on('pageerror', e => log(`page error: ${e.message}`));
    page.on('request', r => {
      if (r.url().startsWith(origin)) result.requests.push(`${r.method()} ${new URL(r.url()).pathname}`);
    });
    page.on('websocket', ws => result.websockets.push(new URL(ws.url()).pathname));
    // The page's client reports here; `rec` wakes up whoever waits for it.
    await page.exposeFunction('gyreRecord', ev => {
      result.page.push(ev);
      rec.add({ who: 'page', ...ev });
    });
    await page.addInitScript(names => {
      for (const name of names) delete window[name];
    }, removed);

    await page.goto(`${origin}/`);
    await page.addScriptTag({ path: bundle });
    const missing = await page.evaluate(names => names.filter(n => typeof window[n] !== 'undefined'), removed);
    if (missing.length > 0) throw new Error(`the page still has ${missing.join(', ')}`);

    await page.evaluate(({ origin, channel, token }) => {
      const record = ev => window.gyreRecord(ev);
      const client = new Centrifuge([
        { transport: 'websocket', endpoint: `${origin.replace(/^http/, 'ws')}/connection/websocket` },
        { transport: 'http_stream', endpoint: `${origin}/connection/http_stream` },
        { transport: 'sse', endpoint: `${origin}/connection/sse` },
      ], { token, name: 'gyre-browser-test', minReconnectDelay: 100, maxReconnectDelay: 1000, timeout: 5000 });
      client.on('connecting', ctx => record({ ev: 'connecting', code: ctx.code, reason: ctx.reason }));
      client.on('connected', ctx => record({ ev: 'connected', transport: ctx.transport, client: ctx.client }));
      client.on('disconnected', ctx => record({ ev: 'disconnected', code: ctx.code, reason: ctx.reason }));
      client.on('error', ctx => record({ ev: 'error', type: ctx.type, error: ctx.error && ctx.error.message }));
      const sub = client.newSubscription(channel);
      sub.on('subscribed', ctx => record({ ev: 'subscribed', channel: ctx.channel }));
      sub.on('error', ctx => record({ ev: 'sub_error', error: ctx.error && ctx.error.message }));
      sub.on('publication', ctx => record({ ev: 'publication', channel: ctx.channel, offset: ctx.offset, data: ctx.data }));
      window.gyreSub = sub;
      sub.subscribe();
      client.connect();
    }, { origin, channel, token: connToken(secret, 'page') });

    const pageEvents = ev => rec.events.filter(e => e.who === 'page' && e.ev === ev);
    await rec.until('the page connected and subscribed', () => pageEvents('subscribed').length > 0);
    log('page connected over', pageEvents('connected')[0].transport);

    result.apiPublished = await apiPublish(args, channel, { text: 'from the API' });
    await rec.until('the page received the API publication',
      () => pageEvents('publication').some(p => p.data && p.data.text === 'from the API'));

    // The page publishes over its transport (through /emulation when emulated).
    await page.evaluate(() => window.gyreSub.publish({ text: 'from the page' }));
    await rec.pubWhere('node', channel, 'the page publication', p => p.data && p.data.text === 'from the page');
    await rec.until('the page received its own publication',
      () => pageEvents('publication').some(p => p.data && p.data.text === 'from the page'));
    // A duplicate would arrive within this pause.
    await sleep(300);
  } finally {
    await browser.close();
    node.disconnect();
  }
});

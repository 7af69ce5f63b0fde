// The browser's own EventSource (no SDK) on `/connection/uni_sse`, in a real headless Chromium on
// gyre's page at `/`: subscribed to two channels through its connect request, it receives
// publications; then the server API disconnects its user while publications keep coming on both
// channels. The EventSource reconnects by itself with `Last-Event-ID` (the cursor of both
// channels gyre put in the event ids) and gyre recovers what it missed into the connect push.
//
// The connect request (`cf_connect`) is `{"token": <token of user --user>, "subs": {a: {}, b: {}}}`.
// Publications carry `{n, channel}`: `n` counts the publications of the channel from 1.
//
// Arguments: --url --secret --api --api-key --channels a,b --user [--chromium PATH] [--timeout]
// Result: {events: [{t, data?, lastEventId?, open?, error?, readyState?} in the order the page saw
// them], published: {channel: [{n, offset, epoch, phase}]}, requests: [{url, lastEventId}] (the
// page's requests to /connection/uni_sse), disconnected: reply of the API disconnect}
import { main, need, log, Recorder, connToken, apiPublish, apiCall, sleep, launchChromium } from './lib.mjs';

main('browser_uni_sse', async ({ args, result }) => {
  const url = need(args, 'url');
  const secret = need(args, 'secret');
  const user = need(args, 'user');
  const channels = need(args, 'channels').split(',');
  if (channels.length !== 2) throw new Error('--channels takes two channels');
  const origin = url.replace(/^ws/, 'http').replace(/\/connection\/websocket$/, '');
  const rec = new Recorder();
  result.events = [];
  result.requests = [];
  result.published = Object.fromEntries(channels.map(c => [c, []]));

  /** Parsed pushes the page received so far (pings `{}` left out). */
  const pushes = () => result.events.filter(e => e.data !== undefined).map(e => JSON.parse(e.data))
    .filter(p => Object.keys(p).length > 0);
  const connects = () => pushes().filter(p => p.connect);
  /** Offsets of `channel` received so far, from the connect pushes and the live publications. */
  const received = channel => pushes().flatMap(p => {
    if (p.connect) return ((p.connect.subs || {})[channel]?.publications || []).map(x => x.offset);
    return p.channel === channel && p.pub ? [p.pub.offset] : [];
  });
  let phase = 'live';
  const publish = async channel => {
    const n = result.published[channel].length + 1;
    const r = await apiPublish(args, channel, { n, channel });
    result.published[channel].push({ n, ...r, phase });
  };
  const publishBoth = async () => {
    for (const channel of channels) await publish(channel);
  };

  const browser = await launchChromium(args);
  try {
    const page = await browser.newPage();
    page.on('console', msg => log(`page console ${msg.type()}: ${msg.text()}`));
    page.on('pageerror', e => log(`page error: ${e.message}`));
    page.on('request', async r => {
      if (!r.url().startsWith(`${origin}/connection/uni_sse`)) return;
      const entry = { url: r.url() };
      result.requests.push(entry);
      const headers = await r.allHeaders().catch(() => r.headers());
      entry.lastEventId = headers['last-event-id'] ?? null;
    });
    await page.exposeFunction('gyreEvent', ev => {
      result.events.push(ev);
      rec.add({ who: 'page', ...ev });
    });
    await page.goto(`${origin}/`);

    const connect = { token: connToken(secret, user), subs: Object.fromEntries(channels.map(c => [c, {}])) };
    await page.evaluate(path => {
      const source = new EventSource(path);
      const started = Date.now();
      const report = ev => window.gyreEvent({ t: Date.now() - started, ...ev });
      source.onopen = () => report({ open: true });
      source.onerror = () => report({ error: true, readyState: source.readyState });
      source.onmessage = e => report({ data: e.data, lastEventId: e.lastEventId });
      window.gyreSource = source;
    }, `/connection/uni_sse?cf_connect=${encodeURIComponent(JSON.stringify(connect))}`);

    await rec.until('the connect push', () => connects().length >= 1);
    log('connected:', connects()[0]);

    // Live publications on both channels.
    for (let i = 0; i < 3; i++) await publishBoth();
    await rec.until('the live publications',
      () => channels.every(c => received(c).length >= result.published[c].length));

    // The server ends the stream; publications keep coming until the EventSource is back.
    phase = 'around the disconnect';
    await publishBoth();
    result.disconnected = await apiCall(need(args, 'api'), need(args, 'api-key'), 'disconnect', { user });
    log('disconnected the user');
    phase = 'missed';
    const deadline = Date.now() + 15000;
    while (connects().length < 2) {
      if (Date.now() > deadline) throw new Error('the EventSource did not reconnect within 15 s');
      await publishBoth();
      await sleep(150);
    }
    log('reconnected:', connects()[1]);
    phase = 'after the reconnect';
    for (let i = 0; i < 3; i++) await publishBoth();
    // A lost publication is for the driver to report, with everything that did arrive.
    await rec.until('every publication', () => channels.every(c => received(c).length >= result.published[c].length))
      .catch(e => { result.incomplete = e.message; });
    // A duplicate would arrive within this pause.
    await sleep(500);
    await page.evaluate(() => window.gyreSource.close());
  } finally {
    await browser.close();
  }
});

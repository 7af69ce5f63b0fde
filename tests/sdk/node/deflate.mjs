// permessage-deflate with real clients: the `ws` package (perMessageDeflate, compressing its own
// messages too) and Chromium's own WebSocket on a page of gyre's origin. Each connects, subscribes,
// and must decode a long API publication that gyre sent compressed.
//
// Arguments: --url (gyre's ws URL) --api --api-key --secret --channel [--chromium PATH]
// Result: {ws: {extensions, text}, chromium: {extensions, text}}
import WebSocket from 'ws';
import { main, need, connToken, apiPublish, launchChromium } from './lib.mjs';

/** Connect, subscribe, then wait for one publication on `channel`: its text and the extensions. */
async function wsClient(url, token, channel, publish) {
  const socket = new WebSocket(url, { perMessageDeflate: { threshold: 0 } });
  const messages = [];
  let wake = () => {};
  socket.on('message', data => {
    for (const line of data.toString().split('\n')) messages.push(JSON.parse(line));
    wake();
  });
  await new Promise((resolve, reject) => { socket.once('open', resolve); socket.once('error', reject); });
  const waitFor = async predicate => {
    for (;;) {
      const found = messages.find(predicate);
      if (found) return found;
      await new Promise(resolve => { wake = resolve; });
    }
  };
  socket.send(JSON.stringify({ id: 1, connect: { token } }));
  await waitFor(m => m.id === 1);
  socket.send(JSON.stringify({ id: 2, subscribe: { channel } }));
  await waitFor(m => m.id === 2);
  await publish();
  const pub = await waitFor(m => m.push && m.push.pub);
  socket.close();
  return { extensions: socket.extensions, text: pub.push.pub.data.text };
}

main('deflate', async ({ args, result }) => {
  const url = need(args, 'url');
  const secret = need(args, 'secret');
  const channel = need(args, 'channel');
  const text = 'compressed once, delivered to all. '.repeat(40);
  result.ws = await wsClient(url, connToken(secret, 'ws-user'), channel, () => apiPublish(args, channel, { text }));

  const browser = await launchChromium(args);
  try {
    const page = await browser.newPage();
    await page.goto(url.replace(/^ws/, 'http').replace(/\/connection\/websocket$/, '/health'));
    const pageResult = page.evaluate(async ({ url, token, channel }) => {
      const socket = new WebSocket(url);
      const messages = [];
      let wake = () => {};
      socket.onmessage = event => {
        for (const line of event.data.split('\n')) messages.push(JSON.parse(line));
        wake();
      };
      await new Promise((resolve, reject) => { socket.onopen = resolve; socket.onerror = reject; });
      const waitFor = async predicate => {
        for (;;) {
          const found = messages.find(predicate);
          if (found) return found;
          await new Promise(resolve => { wake = resolve; });
        }
      };
      socket.send(JSON.stringify({ id: 1, connect: { token } }));
      await waitFor(m => m.id === 1);
      socket.send(JSON.stringify({ id: 2, subscribe: { channel } }));
      await waitFor(m => m.id === 2);
      window.subscribed = true;
      const pub = await waitFor(m => m.push && m.push.pub);
      socket.close();
      return { extensions: socket.extensions, text: pub.push.pub.data.text };
    }, { url, token: connToken(secret, 'page-user'), channel });
    await page.waitForFunction(() => window.subscribed === true);
    await apiPublish(args, channel, { text });
    result.chromium = await pageResult;
  } finally {
    await browser.close();
  }
  result.expected = text;
});

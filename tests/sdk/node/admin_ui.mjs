// The admin web UI served by gyre, in a real headless Chromium: a wrong password is refused, the
// right one logs in, both nodes of the cluster are listed, the channel of two centrifuge-js
// subscribers (one on each node) is listed with its subscriber count, a publication made from
// the UI reaches both, the API form answers, and the live chart draws the node's deliveries.
//
// Arguments: --admin (URL of the UI) --password --url (ws URL of node A) --url-b (of node B)
// --secret --api --api-key (node A's API) --channel --screenshot (PNG path) [--chromium PATH]
// Result: {wrongPassword, unauthenticatedApi, nodes, channelRow, received: {a, b}, history,
// apiOutput, chart: {deliveryPixelsAboveBaseline, nonWhitePixels}, nodesAfterStop}
// Steps: `stop-b` (the driver stops node B).
import { main, need, step, Recorder, newClient, newSub, connToken, apiPublish, launchChromium, sleep } from './lib.mjs';

main('admin_ui', async ({ args, result, sdk }) => {
  const admin = need(args, 'admin');
  const channel = need(args, 'channel');
  const secret = need(args, 'secret');
  const rec = new Recorder();
  result.events = rec.events;

  // One subscriber on each node.
  const subscribers = { a: need(args, 'url'), b: need(args, 'url-b') };
  for (const [who, url] of Object.entries(subscribers)) {
    const client = newClient(sdk, url, rec, who, { token: connToken(secret, `user-${who}`) });
    const sub = newSub(client, rec, who, channel);
    client.connect();
    sub.subscribe();
    await rec.subscribed(who, channel);
  }
  result.received = { a: rec.pubsOf('a', channel), b: rec.pubsOf('b', channel) };

  // Without a session the admin API answers 401.
  const base = admin.replace(/\/+$/, '');
  result.unauthenticatedApi = (await fetch(`${base}/admin/api/info`, { method: 'POST', body: '{}' })).status;

  const browser = await launchChromium(args);
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
    await page.goto(admin);
    await page.waitForSelector('#login-form', { state: 'visible' });

    await page.fill('#password', 'not the password');
    await page.click('#login-button');
    await page.waitForFunction(() => document.getElementById('login-error').textContent !== '');
    result.wrongPassword = {
      message: await page.textContent('#login-error'),
      dashboardHidden: await page.isHidden('#dashboard'),
    };

    await page.fill('#password', need(args, 'password'));
    await page.click('#login-button');
    await page.waitForSelector('#dashboard', { state: 'visible' });
    // Both nodes, up, each with its subscriber (another node's figures are up to 3 s old).
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#nodes tr')];
      return rows.length === 2 && rows.every(r => r.cells[4].textContent === '1');
    });
    result.nodes = await page.$$eval('#nodes tr', rows => rows.map(r => [...r.cells].map(c => c.textContent)));

    // The channel, counted across both nodes.
    const row = `#channels tr[data-channel="${channel}"]`;
    await page.waitForFunction(sel => {
      const r = document.querySelector(sel);
      return r && r.cells[1].textContent === '2';
    }, row);
    result.channelRow = await page.$eval(row, r => [...r.cells].map(c => c.textContent));

    // Publish into it from the UI: both subscribers receive it; history shows it.
    await page.click(row);
    await page.fill('#publish-data', JSON.stringify({ text: 'from the admin UI' }));
    await page.click('#publish-button');
    await rec.pubCount('a', channel, 1);
    await rec.pubCount('b', channel, 1);
    await page.waitForFunction(() => document.getElementById('detail-history').textContent.includes('from the admin UI'));
    result.history = JSON.parse(await page.textContent('#detail-history'));

    // The server API as a form.
    await page.selectOption('#api-method', 'info');
    await page.click('#api-run');
    await page.waitForFunction(() => document.getElementById('api-output').textContent.includes('"nodes"'));
    result.apiOutput = JSON.parse(await page.textContent('#api-output'));

    // Deliveries on node A for the chart: a burst of publications to its subscriber.
    for (let i = 0; i < 30; i++) await apiPublish(args, channel, { burst: i });
    await rec.pubCount('a', channel, 31);
    await sleep(2500);
    result.chart = await page.$eval('#chart', canvas => {
      const g = canvas.getContext('2d');
      const { data, width, height } = g.getImageData(0, 0, canvas.width, canvas.height);
      // The deliveries line is #d97706; the baseline (0/s) is 20 px above the bottom edge.
      const baseline = height - 20;
      let deliveryPixelsAboveBaseline = 0, nonWhitePixels = 0;
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          const i = (y * width + x) * 4;
          const [r, gr, b] = [data[i], data[i + 1], data[i + 2]];
          if (r < 250 || gr < 250 || b < 250) nonWhitePixels++;
          const close = Math.abs(r - 0xd9) < 24 && Math.abs(gr - 0x77) < 24 && Math.abs(b - 0x06) < 24;
          if (close && y < baseline - 3) deliveryPixelsAboveBaseline++;
        }
      }
      return { deliveryPixelsAboveBaseline, nonWhitePixels };
    });
    await page.screenshot({ path: need(args, 'screenshot'), fullPage: true });

    // Node B stops: the page keeps it, marked down, once it no longer announces itself.
    await step('stop-b');
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#nodes tr')];
      return rows.some(r => r.cells[0].textContent === 'node-b' && r.cells[8].textContent === 'down');
    }, null, { timeout: 20000 });
    result.nodesAfterStop = await page.$$eval('#nodes tr', rows => rows.map(r => [...r.cells].map(c => c.textContent)));
  } finally {
    await browser.close();
  }
});

// The demo page served by gyre at `/`, in a real headless Chromium: two tabs subscribe, what tab
// A sends appears in tab B, and an HTTP API publication appears in both. The page uses the
// browser's own WebSocket and no library (the SDK is not involved here).
//
// Arguments: --url (ws URL of gyre; the page URL is derived) --api --api-key [--chromium PATH]
// Result: {a: [lines of tab A's log], b: [...]}
import { main, need, apiPublish, launchChromium } from './lib.mjs';

main('demo_page', async ({ args, result }) => {
  const page = need(args, 'url').replace(/^ws/, 'http').replace(/\/connection\/websocket$/, '/');
  const browser = await launchChromium(args);
  try {
    const a = await browser.newPage();
    const b = await browser.newPage();
    await a.goto(page);
    await b.goto(page);
    for (const tab of [a, b]) await tab.waitForSelector('#log >> text=subscribed to chat:demo');
    await a.fill('input[name=text]', 'hello from tab A');
    await a.click('button');
    await b.waitForSelector('#log >> text=hello from tab A');
    await apiPublish(args, 'chat:demo', { text: 'hello from the API' });
    for (const tab of [a, b]) await tab.waitForSelector('#log >> text=hello from the API');
    const lines = tab => tab.$$eval('#log div', divs => divs.map(d => d.textContent));
    result.a = await lines(a);
    result.b = await lines(b);
  } finally {
    await browser.close();
  }
});

// centrifuge-js over TLS straight to gyre (`http_server.tls`, no terminating proxy): one client
// over wss:// (WebSocket) and one over https:// (HTTP streaming with /emulation), both receiving
// a publication from the HTTP API. The test CA comes from NODE_EXTRA_CA_CERTS, as an operator
// with a private CA would set it.
//
// Arguments: --url (wss://…/connection/websocket) --secret --api --api-key --channel
// Result: {websocket: [publications], http_stream: [publications], events}
import WebSocket from 'ws';
import { main, need, Recorder, connToken, apiPublish } from './lib.mjs';

main('tls', async ({ args, result, sdk }) => {
  const url = need(args, 'url');
  const secret = need(args, 'secret');
  const channel = need(args, 'channel');
  if (!url.startsWith('wss://')) throw new Error(`--url must be wss://, not ${url}`);
  const base = url.replace(/^wss/, 'https').replace(/\/connection\/websocket$/, '');
  const rec = new Recorder();
  result.events = rec.events;

  const clients = {
    websocket: new sdk.Centrifuge(url, { websocket: WebSocket, token: connToken(secret, 'alice') }),
    http_stream: new sdk.Centrifuge(
      [{ transport: 'http_stream', endpoint: `${base}/connection/http_stream` }],
      { emulationEndpoint: `${base}/emulation`, token: connToken(secret, 'bob') },
    ),
  };
  for (const [who, client] of Object.entries(clients)) {
    rec.watchClient(who, client);
    const sub = client.newSubscription(channel);
    rec.watchSub(who, sub);
    result[who] = rec.pubsOf(who, channel);
    client.connect();
    sub.subscribe();
  }
  for (const who of Object.keys(clients)) {
    await rec.connected(who);
    await rec.subscribed(who, channel);
  }
  await apiPublish(args, channel, { over: 'tls' });
  for (const who of Object.keys(clients)) await rec.pubCount(who, channel, 1);
  for (const client of Object.values(clients)) client.disconnect();
});

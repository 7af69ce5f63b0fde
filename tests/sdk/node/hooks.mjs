// Backend hooks through the unmodified SDK, no tokens anywhere: the backend
// (tests/backend/http_backend.py) knows users by their session cookie.
// - alice connects with her cookie (the connect proxy's data arrives in `connected`);
// - subscribes to an allowed channel (the subscribe proxy's data) and a denied one (403);
// - bob subscribes too; alice publishes, bob receives the data as the publish proxy rewrote it;
// - RPC: `echo` (the backend's result) and `fail` (the backend's error 1001);
// - a client without a cookie is refused by the backend: disconnect 4501, no reconnect.
//
// Arguments: --url --protocol [--transport websocket|http_stream|sse] [--timeout]
// Result: {connected, room, denied, received, echo, fail, anonymous}
import { main, need, Recorder, newClient, newSub, encodeData, decodeData, settle, sleep, withCookie } from './lib.mjs';

main('hooks', async ({ args, result, sdk, protocol }) => {
  const url = need(args, 'url');
  const rec = new Recorder();
  result.events = rec.events;

  const alice = newClient(sdk, url, rec, 'alice', { ...withCookie('theme=dark; session=s-alice'), data: encodeData(protocol, { from: 'sdk' }) });
  let connectData = null;
  alice.on('connected', ctx => { connectData = decodeData(ctx.data); });
  alice.connect();
  await rec.connected('alice');
  result.connected = { data: connectData, transport: rec.of('alice', 'connected')[0].transport };

  let roomData = null;
  const room = newSub(alice, rec, 'alice', 'hooks:room');
  room.on('subscribed', ctx => { roomData = decodeData(ctx.data); });
  room.subscribe();
  await rec.subscribed('alice', 'hooks:room');
  result.room = roomData;

  const denied = newSub(alice, rec, 'alice', 'hooks:denied-1');
  denied.subscribe();
  await rec.until('denied unsubscribed', () => rec.events.some(e => e.channel === 'hooks:denied-1' && e.ev === 'unsubscribed'));
  const unsub = rec.events.find(e => e.channel === 'hooks:denied-1' && e.ev === 'unsubscribed');
  result.denied = { code: unsub.code, reason: unsub.reason, state: denied.state };

  const bob = newClient(sdk, url, rec, 'bob', withCookie('session=s-bob'));
  bob.connect();
  await rec.connected('bob');
  const bobRoom = newSub(bob, rec, 'bob', 'hooks:room');
  bobRoom.subscribe();
  await rec.subscribed('bob', 'hooks:room');
  const published = await settle(alice.publish('hooks:room', encodeData(protocol, { text: 'hi' })));
  if (published.error) throw new Error(`publish failed: ${JSON.stringify(published.error)}`);
  await rec.pubCount('bob', 'hooks:room', 1);
  result.received = rec.pubsOf('bob', 'hooks:room').map(p => ({ data: p.data, user: p.info && p.info.user }));

  const echo = await settle(alice.rpc('echo', encodeData(protocol, { n: 1 })));
  result.echo = echo.error ? { error: echo.error } : decodeData(echo.ok.data);
  const fail = await settle(alice.rpc('fail', encodeData(protocol, {})));
  result.fail = fail.error || { unexpected: 'success' };

  const anonymous = newClient(sdk, url, rec, 'anonymous');
  anonymous.connect();
  await rec.until('anonymous disconnected', () => rec.of('anonymous', 'disconnected').length >= 1);
  await sleep(300);
  const gone = rec.of('anonymous', 'disconnected')[0];
  result.anonymous = { code: gone.code, reason: gone.reason, state: anonymous.state, connectingCount: rec.of('anonymous', 'connecting').length };

  alice.disconnect();
  bob.disconnect();
});

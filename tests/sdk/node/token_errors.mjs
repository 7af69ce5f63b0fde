// Connection token failures:
// - badSignature: a token signed with the wrong secret → the server closes with 3500 (invalid
//   token, terminal: the SDK stays disconnected, no reconnect);
// - expired: a token whose exp is in the past → connect error 109; the SDK asks getToken for a
//   new token, reconnects and succeeds;
// - expiredNoRefresh: the same without getToken → the SDK gives up (disconnected, unauthorized).
//
// Arguments: --url --protocol --secret [--timeout]
// Result: {badSignature: {disconnected, connectingCount, events}, expired: {errors, getTokenCalls,
// connected}, expiredNoRefresh: {...}}
import { main, need, Recorder, newClient, connToken, sleep } from './lib.mjs';

main('token_errors', async ({ args, result, sdk }) => {
  const url = need(args, 'url');
  const secret = need(args, 'secret');

  {
    const rec = new Recorder();
    result.badSignature = { events: rec.events };
    const c = newClient(sdk, url, rec, 'mallory', { token: connToken(`${secret}-wrong`, 'mallory') });
    c.connect();
    await rec.until('disconnected after a bad signature', () => rec.of('mallory', 'disconnected').length >= 1);
    // A reconnect attempt would show up within this pause.
    await sleep(700);
    Object.assign(result.badSignature, {
      disconnected: rec.of('mallory', 'disconnected')[0],
      state: c.state,
      connectedCount: rec.of('mallory', 'connected').length,
      connectingCount: rec.of('mallory', 'connecting').length,
    });
    c.disconnect();
  }

  {
    const rec = new Recorder();
    result.expired = { events: rec.events };
    let calls = 0;
    const c = newClient(sdk, url, rec, 'alice', {
      token: connToken(secret, 'alice', { ttl: -60 }),
      getToken: async () => {
        calls += 1;
        return connToken(secret, 'alice');
      },
    });
    c.connect();
    const connected = await rec.connected('alice');
    Object.assign(result.expired, {
      errors: rec.of('alice', 'error').map(e => ({ type: e.type, code: e.error && e.error.code })),
      getTokenCalls: calls,
      connected: !!connected,
      state: c.state,
    });
    c.disconnect();
  }

  {
    const rec = new Recorder();
    result.expiredNoRefresh = { events: rec.events };
    const c = newClient(sdk, url, rec, 'bob', { token: connToken(secret, 'bob', { ttl: -60 }) });
    c.connect();
    await rec.until('disconnected after an expired token without getToken', () => rec.of('bob', 'disconnected').length >= 1);
    await sleep(300);
    Object.assign(result.expiredNoRefresh, {
      errors: rec.of('bob', 'error').map(e => ({ type: e.type, code: e.error && e.error.code })),
      disconnected: rec.of('bob', 'disconnected')[0],
      connectedCount: rec.of('bob', 'connected').length,
      state: c.state,
    });
    c.disconnect();
  }
});

// A Centrifugo deployment in the middle of an HMAC key rotation, seen by the SDK:
// - a client whose token was signed with the previous secret connects, as does one with the
//   current secret; a token whose iss does not match issuer_regex is refused (disconnected, 3500);
// - the previous-secret client subscribes and receives a publication from the HTTP API: with
//   --protocol protobuf a binary one sent as b64data (bytes that are not JSON), with json a
//   JSON one.
//
// Arguments: --url --protocol --secret --previous-secret --issuer --api --api-key --channel
// [--timeout]
// Result: {previous: {connected}, current: {connected}, badIssuer: {disconnected},
// received: [byte array (protobuf) or JSON value (json)], events}
import { main, need, Recorder, newClient, newSub, signHS256, nowSec, apiCall } from './lib.mjs';

main('key_rotation', async ({ args, result, sdk, protocol }) => {
  const url = need(args, 'url');
  const channel = need(args, 'channel');
  const issuer = need(args, 'issuer');
  const token = (secret, user, iss) => signHS256(secret, { sub: user, iss, exp: nowSec() + 3600 });
  const rec = new Recorder();
  result.events = rec.events;

  const previous = newClient(sdk, url, rec, 'previous', {
    token: token(need(args, 'previous-secret'), 'alice', issuer),
  });
  const sub = newSub(previous, rec, 'previous', channel);
  result.received = [];
  sub.on('publication', ctx => {
    result.received.push(ctx.data instanceof Uint8Array ? Array.from(ctx.data) : ctx.data);
    rec.poke();
  });
  previous.connect();
  sub.subscribe();
  result.previous = { connected: !!(await rec.connected('previous')) };
  await rec.subscribed('previous', channel);

  const current = newClient(sdk, url, rec, 'current', { token: token(need(args, 'secret'), 'bob', issuer) });
  current.connect();
  result.current = { connected: !!(await rec.connected('current')) };
  current.disconnect();

  const mallory = newClient(sdk, url, rec, 'mallory', {
    token: token(need(args, 'secret'), 'mallory', 'https://evil.example/'),
  });
  mallory.connect();
  await rec.until('mallory disconnected', () => rec.of('mallory', 'disconnected').length >= 1);
  result.badIssuer = { disconnected: rec.of('mallory', 'disconnected')[0], state: mallory.state };
  mallory.disconnect();

  const body = protocol === 'protobuf'
    ? { channel, b64data: Buffer.from([0, 159, 146, 150, 255]).toString('base64') }
    : { channel, data: { n: 1 } };
  await apiCall(need(args, 'api'), need(args, 'api-key'), 'publish', body);
  await rec.until('the publication', () => result.received.length >= 1);
  previous.disconnect();
});

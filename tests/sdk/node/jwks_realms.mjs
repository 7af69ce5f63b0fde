// One JWKS URL per Keycloak-style realm (jwks_public_endpoint with {{realm}}, filled from
// issuer_regex's named group): this script serves /realms/<realm>/certs for realms acme and
// beta (the same RSA key under a kid of each realm) and connects the SDK with RS256 tokens:
// - acme and beta tokens (kid of their own realm) connect;
// - a beta token carrying acme's kid is refused (3500): a kid is looked up in its issuer's set
//   (after the temporary error 100 while a refetch of that set is rate-limited);
// - a token from an issuer outside issuer_regex is refused (3500) without any fetch.
//
// Arguments: --url --protocol --jwks-port --key (RSA private key PEM file) [--timeout]
// Result: {acme: {connected}, beta: {connected}, crossRealm: {code}, otherIssuer: {code},
// paths: [request paths the JWKS server saw], events}
import { createPrivateKey, createPublicKey, createSign } from 'node:crypto';
import { createServer } from 'node:http';
import { readFileSync } from 'node:fs';
import { main, need, Recorder, newClient, nowSec } from './lib.mjs';

function b64url(buf) {
  return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

function signRS256(privateKey, kid, claims) {
  const header = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid }));
  const payload = b64url(JSON.stringify(claims));
  const signature = createSign('RSA-SHA256').update(`${header}.${payload}`).sign(privateKey);
  return `${header}.${payload}.${b64url(signature)}`;
}

main('jwks_realms', async ({ args, result, sdk }) => {
  const url = need(args, 'url');
  const privateKey = createPrivateKey(readFileSync(need(args, 'key')));
  const publicJwk = createPublicKey(privateKey).export({ format: 'jwk' });

  result.paths = [];
  const server = createServer((req, res) => {
    result.paths.push(req.url);
    const realm = /^\/realms\/([a-z]+)\/certs$/.exec(req.url);
    if (!realm || !['acme', 'beta'].includes(realm[1])) {
      res.writeHead(404).end();
      return;
    }
    const keys = [{ ...publicJwk, kid: `${realm[1]}-key`, alg: 'RS256', use: 'sig' }];
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys }));
  });
  await new Promise(resolve => server.listen(Number(need(args, 'jwks-port')), '127.0.0.1', resolve));

  const rec = new Recorder();
  result.events = rec.events;
  const token = (kid, iss, user) => signRS256(privateKey, kid, { sub: user, iss, exp: nowSec() + 3600 });
  const connects = async (who, tok) => {
    const c = newClient(sdk, url, rec, who, { token: tok });
    c.connect();
    const connected = await rec.connected(who);
    c.disconnect();
    return { connected: !!connected };
  };
  const refused = async (who, tok) => {
    const c = newClient(sdk, url, rec, who, { token: tok });
    c.connect();
    // An unknown kid refetches the set at most every 5 s; until then the answer is the
    // temporary error 100 and the SDK retries.
    await rec.until(`${who} disconnected`, () => rec.of(who, 'disconnected').length >= 1, 20000);
    c.disconnect();
    return { code: rec.of(who, 'disconnected')[0].code };
  };

  result.acme = await connects('acme', token('acme-key', 'https://kc.example/realms/acme', 'a'));
  result.beta = await connects('beta', token('beta-key', 'https://kc.example/realms/beta', 'b'));
  result.crossRealm = await refused('cross', token('acme-key', 'https://kc.example/realms/beta', 'c'));
  result.otherIssuer = await refused('other', token('acme-key', 'https://evil.example/realms/acme', 'd'));
  server.close();
});

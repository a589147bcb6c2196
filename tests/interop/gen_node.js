// Requests signed by npm http-signature (Joyent's draft-cavage reference) and npm
// http-message-signatures (RFC 9421).
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const httpSignature = require('http-signature');
const { httpbis, createSigner } = require('http-message-signatures');

const out = process.argv[2];
const keys = path.join(out, 'keys');
const HOST = 'api.example.test';
const PATH = '/orders/7?expand=items&page=2';
const BODY = Buffer.from('{"order": 7, "note": "na\u00efve \u2713"}');
const read = (n) => fs.readFileSync(path.join(keys, n));
const SECRET = read('hmac.secret');
const now = Math.floor(Date.now() / 1000);
const date = new Date(now * 1000).toUTCString();
const version = (p) => JSON.parse(fs.readFileSync(require.resolve(p + '/package.json'))).version;

function requestJson(method, target, headers, body) {
  return { method, target, scheme: 'https', authority: HOST, headers, body: body ? body.toString() : '' };
}

// A minimal ClientRequest for http-signature's signRequest: it reads method, path and headers.
function fakeRequest(method, headers) {
  const h = new Map(headers.map(([k, v]) => [k.toLowerCase(), [k, v]]));
  return {
    method,
    path: PATH,
    getHeader: (n) => (h.get(n.toLowerCase()) || [])[1],
    setHeader: (n, v) => h.set(n.toLowerCase(), [n, v]),
    list: () => [...h.values()],
  };
}

function joyentCases() {
  const cases = [];
  const algs = [
    ['hmac-sha1', 'interop-hmac-sha1', SECRET],
    ['hmac-sha256', 'interop-hmac-sha256', SECRET],
    ['hmac-sha512', 'interop-hmac-sha512', SECRET],
    ['rsa-sha256', 'interop-rsa-sha256', read('rsa.key.pem')],
    ['rsa-sha512', 'interop-rsa-sha512', read('rsa.key.pem')],
    ['ecdsa-sha256', 'interop-ecdsa-p256-sha256', read('p256.key.pem')],
    ['ed25519-sha512', 'interop-ed25519', read('ed25519.key.pem')],
  ];
  for (const [alg, kid, key] of algs) {
    for (const header of ['Authorization', 'Signature']) {
      for (const withBody of [true, false]) {
        const rid = 'node-cavage-' + crypto.randomBytes(6).toString('hex');
        const headers = [['Host', HOST], ['Date', date], ['X-Request-Id', rid]];
        let covered = ['(request-target)', 'host', 'date', 'x-request-id'];
        let method = 'GET';
        if (withBody) {
          method = 'POST';
          headers.push(['Content-Type', 'application/json']);
          headers.push(['Digest', 'SHA-256=' + crypto.createHash('sha256').update(BODY).digest('base64')]);
          covered = covered.concat(['content-type', 'digest']);
        }
        const req = fakeRequest(method, headers);
        httpSignature.sign(req, {
          key, keyId: kid, algorithm: alg, headers: covered, authorizationHeaderName: header,
        });
        cases.push({
          name: `${alg} in ${header}${withBody ? ' with body' : ''}`,
          key_id: kid, algorithm: alg, covers: covered,
          request: requestJson(method, PATH, req.list(), withBody ? BODY : null),
        });
      }
    }
  }
  // (created) and (expires), which this library supports (draft-cavage-12 style).
  const headers = [['Host', HOST], ['Date', date], ['X-Request-Id', 'node-created-' + crypto.randomBytes(6).toString('hex')]];
  const req = fakeRequest('GET', headers);
  const covered = ['(request-target)', '(created)', '(expires)', 'host', 'x-request-id'];
  httpSignature.sign(req, {
    key: read('ed25519.key.pem'), keyId: 'interop-ed25519', algorithm: 'ed25519-sha512',
    headers: covered, expiresIn: 300,
  });
  cases.push({
    name: 'ed25519 with (created) and (expires)', key_id: 'interop-ed25519', algorithm: 'ed25519-sha512',
    covers: covered, request: requestJson('GET', PATH, req.list(), null),
  });
  return cases;
}

// The library's createSigner leaves Node's default PSS salt length (the maximum) although RFC 9421
// section 3.3.1 fixes it at 64 bytes; sign PSS through the library with a compliant signer.
function signerFor(key, alg, kid) {
  if (alg !== 'rsa-pss-sha512') return createSigner(key, alg, kid);
  return {
    id: kid, alg,
    sign: async (data) => crypto.sign('sha512', data, {
      key, padding: crypto.constants.RSA_PKCS1_PSS_PADDING, saltLength: 64,
    }),
  };
}

async function hmsCases() {
  const algs = [
    ['rsa-pss-sha512', 'interop-rsa-pss-sha512', crypto.createPrivateKey(read('rsa-pss.key.pem'))],
    ['rsa-v1_5-sha256', 'interop-rsa-v1_5-sha256', crypto.createPrivateKey(read('rsa.key.pem'))],
    ['hmac-sha256', 'interop-hmac-sha256', SECRET],
    ['ecdsa-p256-sha256', 'interop-ecdsa-p256-sha256', crypto.createPrivateKey(read('p256.key.pem'))],
    ['ecdsa-p384-sha384', 'interop-ecdsa-p384-sha384', crypto.createPrivateKey(read('p384.key.pem'))],
    ['ed25519', 'interop-ed25519', crypto.createPrivateKey(read('ed25519.key.pem'))],
  ];
  const variants = [
    ['method authority path query + digest', ['@method', '@authority', '@path', '@query', 'x-request-id', 'content-type', 'content-digest'], true],
    ['target-uri + date', ['@method', '@target-uri', 'date', 'x-request-id'], false],
  ];
  const cases = [];
  for (const [alg, kid, key] of algs) {
    for (const [vname, fields, withBody] of variants) {
      const rid = 'node-9421-' + crypto.randomBytes(6).toString('hex');
      const headers = { Host: HOST, Date: date, 'X-Request-Id': rid };
      if (withBody) {
        headers['Content-Type'] = 'application/json';
        headers['Content-Digest'] = 'sha-512=:' + crypto.createHash('sha512').update(BODY).digest('base64') + ':';
      }
      const signed = await httpbis.signMessage({
        key: signerFor(key, alg, kid),
        fields,
        params: ['created', 'expires', 'keyid', 'alg', 'nonce', 'tag'],
        paramValues: {
          created: new Date(now * 1000),
          expires: new Date((now + 300) * 1000),
          nonce: crypto.randomBytes(9).toString('base64url'),
          tag: 'interop',
        },
      }, { method: withBody ? 'POST' : 'GET', url: 'https://' + HOST + PATH, headers });
      cases.push({
        name: `${alg}: ${vname}`, key_id: kid, algorithm: alg, covers: fields,
        request: requestJson(withBody ? 'POST' : 'GET', PATH, Object.entries(signed.headers), withBody ? BODY : null),
      });
    }
  }
  // The library's own PSS signer, as shipped: refused (salt length is not 64).
  const headers = { Host: HOST, Date: date, 'X-Request-Id': 'node-9421-pss-default-' + crypto.randomBytes(6).toString('hex') };
  const signed = await httpbis.signMessage({
    key: createSigner(crypto.createPrivateKey(read('rsa-pss.key.pem')), 'rsa-pss-sha512', 'interop-rsa-pss-sha512'),
    fields: ['@method', '@authority', '@path', '@query', 'x-request-id'],
    params: ['created', 'keyid', 'alg'],
    paramValues: { created: new Date(now * 1000) },
  }, { method: 'GET', url: 'https://' + HOST + PATH, headers });
  cases.push({
    name: 'rsa-pss-sha512 with the library\'s createSigner (Node default salt length, not RFC 9421\'s 64)',
    key_id: 'interop-rsa-pss-sha512', algorithm: 'rsa-pss-sha512',
    covers: ['@method', '@authority', '@path', '@query', 'x-request-id'],
    expect: { code: 'signature_invalid', why: 'RFC 9421 section 3.3.1 requires a 64-byte PSS salt; the library signs with the maximum' },
    request: requestJson('GET', PATH, Object.entries(signed.headers), null),
  });
  return cases;
}

function write(name, generator, scheme, cases) {
  fs.writeFileSync(path.join(out, name), JSON.stringify({
    generator, scheme, signed_at: now,
    note: 'written by tests/interop/generate.sh; verify at signed_at (the Date/created of every request)',
    cases,
  }, null, 1) + '\n');
}

(async () => {
  write('http-signature-node.json', 'npm http-signature ' + version('http-signature'), 'cavage', joyentCases());
  write('http-message-signatures-node.json', 'npm http-message-signatures ' + version('http-message-signatures'), 'rfc9421', await hmsCases());
})().catch((e) => { console.error(e); process.exit(1); });

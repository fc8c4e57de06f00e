// Unit tests of the SendGrid wire format (`node --test`).
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { mailSend, receipt, settings, transportError } from './sendgrid.js';

const encoder = new TextEncoder();
const message = {
  to: 'ada@example.com',
  toName: 'Ada',
  subject: 'Your order o-1 is confirmed',
  text: 'Thank you',
  html: undefined,
  orderId: 'o-1',
};

const respond = (status, headers, body) => ({ status, headers, body: encoder.encode(body) });

test('settings default and trim', () => {
  const s = settings((name) => ({ 'api-base': 'http://127.0.0.1:9/', 'from-name': ' ' })[name]);
  assert.deepEqual(s, {
    apiBase: 'http://127.0.0.1:9',
    fromEmail: 'orders@cairn.example',
    fromName: 'Cairn Shop',
  });
});

test('the request is a v3 mail send with the key as a placeholder', () => {
  const req = mailSend(settings(() => undefined), message);
  assert.equal(req.method, 'POST');
  assert.equal(req.url, 'https://api.sendgrid.com/v3/mail/send');
  assert.deepEqual(req.headers, [
    ['authorization', 'Bearer {{secret:SENDGRID_API_KEY}}'],
    ['content-type', 'application/json'],
  ]);
  assert.deepEqual(JSON.parse(new TextDecoder().decode(req.body)), {
    personalizations: [
      { to: [{ email: 'ada@example.com', name: 'Ada' }], custom_args: { order_id: 'o-1' } },
    ],
    from: { email: 'orders@cairn.example', name: 'Cairn Shop' },
    subject: 'Your order o-1 is confirmed',
    content: [{ type: 'text/plain', value: 'Thank you' }],
  });
});

test('an accepted message carries its id', () => {
  const ok = receipt(respond(202, [['X-Message-Id', 'm-1']], ''));
  assert.deepEqual(ok, { ok: { messageId: 'm-1' } });
  assert.deepEqual(receipt(respond(202, [], '')), { ok: { messageId: undefined } });
});

test('errors map to provider errors', () => {
  const body = '{"errors":[{"message":"bad from","field":"from.email"},{"message":"no personalization","field":null}]}';
  assert.deepEqual(receipt(respond(400, [], body)), {
    err: { tag: 'invalid-request', val: 'from.email: bad from; no personalization' },
  });
  assert.deepEqual(receipt(respond(401, [], '{}')), {
    err: { tag: 'unauthorized', val: 'sendgrid answered HTTP 401' },
  });
  assert.deepEqual(receipt(respond(429, [['retry-after', '2']], '')), {
    err: { tag: 'rate-limited', val: 2000 },
  });
  assert.deepEqual(receipt(respond(503, [], 'down')), {
    err: { tag: 'unavailable', val: 'sendgrid HTTP 503: sendgrid answered HTTP 503' },
  });
});

test('transport errors: retryable ones are unavailable', () => {
  assert.deepEqual(transportError({ tag: 'timeout' }), { tag: 'unavailable', val: 'sendgrid: timeout' });
  assert.deepEqual(transportError({ tag: 'denied', val: 'x.example' }), {
    tag: 'invalid-request',
    val: 'sendgrid: denied: x.example',
  });
});

// The SendGrid wire format, as pure functions (no WIT import), so that `node --test` runs them:
// the v3 Mail Send request for a `cairn:commerce/types.email-message`, and the mapping of
// SendGrid's answers to an `email-receipt` or a `provider-error`. Same rules as the Rust
// SendGrid provider (guests/providers/sendgrid): see ../../../../shared/providers.md.

export const DEFAULT_API_BASE = 'https://api.sendgrid.com';
export const DEFAULT_FROM_EMAIL = 'orders@cairn.example';
export const DEFAULT_FROM_NAME = 'Cairn Shop';
// The host fills the placeholder in; the component never sees the key.
export const AUTHORIZATION = 'Bearer {{secret:SENDGRID_API_KEY}}';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The deployment's settings, read through `config` (a `name -> string | undefined`). */
export function settings(config) {
  const nonEmpty = (name) => {
    const value = config(name);
    return value && value.trim() ? value : undefined;
  };
  return {
    apiBase: (nonEmpty('api-base') ?? DEFAULT_API_BASE).replace(/\/+$/, ''),
    fromEmail: nonEmpty('from-email') ?? DEFAULT_FROM_EMAIL,
    fromName: nonEmpty('from-name') ?? DEFAULT_FROM_NAME,
  };
}

/** The `cairn:durable/http.request` that sends `msg`. */
export function mailSend(s, msg) {
  const to = { email: msg.to };
  if (msg.toName) to.name = msg.toName;
  const content = [{ type: 'text/plain', value: msg.text }];
  if (msg.html) content.push({ type: 'text/html', value: msg.html });
  const body = {
    personalizations: [{ to: [to], custom_args: { order_id: msg.orderId } }],
    from: { email: s.fromEmail, name: s.fromName },
    subject: msg.subject,
    content,
  };
  return {
    method: 'POST',
    url: `${s.apiBase}/v3/mail/send`,
    headers: [
      ['authorization', AUTHORIZATION],
      ['content-type', 'application/json'],
    ],
    body: encoder.encode(JSON.stringify(body)),
    timeoutMs: undefined,
  };
}

/** `{ ok: email-receipt }` or `{ err: provider-error }` for SendGrid's `response`. */
export function receipt(response) {
  const { status } = response;
  if (status >= 200 && status < 300) {
    return { ok: { messageId: header(response, 'x-message-id') } };
  }
  const message = errorMessage(response);
  if (status === 401 || status === 403) return { err: { tag: 'unauthorized', val: message } };
  if (status === 429) return { err: { tag: 'rate-limited', val: retryAfterMs(response) } };
  if (status >= 400 && status < 500) return { err: { tag: 'invalid-request', val: message } };
  return { err: { tag: 'unavailable', val: `sendgrid HTTP ${status}: ${message}` } };
}

/** The provider error for a request that got no response (`cairn:durable/http.http-error`). */
export function transportError(error) {
  const detail = error.val === undefined ? error.tag : `${error.tag}: ${error.val}`;
  const retryable = error.tag === 'timeout' || error.tag === 'transport';
  return { tag: retryable ? 'unavailable' : 'invalid-request', val: `sendgrid: ${detail}` };
}

function header(response, name) {
  const found = response.headers.find(([key]) => key.toLowerCase() === name);
  return found ? found[1] : undefined;
}

// `field: message; message; ...` from `{"errors": [{"message", "field"}]}`.
function errorMessage(response) {
  try {
    const parsed = JSON.parse(decoder.decode(response.body));
    const parts = (parsed.errors ?? [])
      .filter((e) => typeof e.message === 'string')
      .map((e) => (e.field ? `${e.field}: ${e.message}` : e.message));
    if (parts.length > 0) return parts.join('; ');
  } catch {
    // Not JSON: the generic text below.
  }
  return `sendgrid answered HTTP ${response.status}`;
}

// `Retry-After` in seconds, as milliseconds (`option<u32>`).
function retryAfterMs(response) {
  const seconds = Number.parseInt(header(response, 'retry-after') ?? '', 10);
  return Number.isFinite(seconds) && seconds >= 0 ? Math.min(seconds * 1000, 2 ** 32 - 1) : undefined;
}

// `sendgrid-js-email`: a `cairn:commerce/email` provider written in JavaScript (world
// `cairn:commerce/email-provider`), sending through SendGrid's v3 Mail Send API. The host
// journals and links it like the Rust providers; the wire format is in ./sendgrid.js.
//
// A WIT `result<T, E>` export returns `T` or throws `E`; a variant is `{ tag, val }`.

import { send } from 'cairn:durable/http@0.1.2';
import { write } from 'cairn:durable/log@0.1.2';
import { config } from 'cairn:durable/call-context@0.1.2';

import { mailSend, receipt, settings, transportError } from './sendgrid.js';

export const email = {
  sendEmail(msg) {
    let response;
    try {
      response = send(mailSend(settings(config), msg));
    } catch (error) {
      const providerError = transportError(error.payload ?? error);
      write('warn', `sendgrid-js: ${providerError.val}`);
      throw providerError;
    }
    const answer = receipt(response);
    if (answer.err) throw answer.err;
    return answer.ok;
  },
};

export const emailRecovery = {
  // SendGrid cannot be asked whether a message was sent; the host applies the email interface's
  // in-doubt policy (at-most-once by default).
  findEmail(_msg) {
    return undefined;
  },
};

export const recovery = {
  safety(_iface, _fn) {
    return { tag: 'none' };
  },
};

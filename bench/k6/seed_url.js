// The seed's POST /url (Authorization: the bare token, as the seed took it),
// a new URL on a new host each time (the per-host rate stays untouched).
// One account, as bench/run's gRPC AddUrl run: the server needs
// MONITOR_MAX_URLS_PER_USER above what the run adds (~1,000 a second per
// virtual user here; bench/run and the smoke test raise it).
import { options as shape, postJson, account, unique, expect } from './lib.js';

export const options = shape();

export function setup() {
  return { token: account(`k6-url-${__ENV.RUN_ID || Date.now()}@example.com`) };
}

export default function (data) {
  const res = postJson('/url', { URL: `https://${unique('h')}.k6.invalid/`, Period: 1 }, { authorization: data.token });
  expect(res, 201, 'POST /url');
}

// POST /v1/urls, the JSON side of AddUrl, a new URL on a new host each time.
// One account, as bench/run's gRPC AddUrl run: the server needs
// MONITOR_MAX_URLS_PER_USER above what the run adds (~1,000 a second per
// virtual user here; bench/run and the smoke test raise it).
import { options as shape, postJson, account, unique, expect } from './lib.js';

export const options = shape();

export function setup() {
  return { token: account(`k6-v1-url-${__ENV.RUN_ID || Date.now()}@example.com`) };
}

export default function (data) {
  const res = postJson('/v1/urls', { url: `https://${unique('h')}.k6.invalid/`, period: '60s' },
    { authorization: `Bearer ${data.token}` });
  expect(res, 200, 'POST /v1/urls');
}

// GET /v1/urls/{id}/statuses?page_size=100, the JSON side of ListStatuses.
// bench/run passes TOKEN and URL_ID (the URL its gRPC run reads, 100
// statuses); without them the script makes an account and a URL (no
// statuses yet: an empty page).
import http from 'k6/http';
import { options as shape, postJson, account, BASE, expect } from './lib.js';

export const options = shape();

export function setup() {
  if (__ENV.TOKEN && __ENV.URL_ID) return { token: __ENV.TOKEN, id: __ENV.URL_ID };
  const token = account(`k6-statuses-${__ENV.RUN_ID || Date.now()}@example.com`);
  const added = postJson('/v1/urls', { url: 'https://statuses.k6.invalid/', period: '60s' },
    { authorization: `Bearer ${token}` });
  return { token, id: added.json('url.id') };
}

export default function (data) {
  const res = http.get(`${BASE}/v1/urls/${data.id}/statuses?page_size=100`,
    { headers: { authorization: `Bearer ${data.token}` } });
  expect(res, 200, 'GET /v1/urls/{id}/statuses');
}

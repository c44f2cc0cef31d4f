// The seed's POST /login, each virtual user logging in to its own account.
import { options as shape, postJson, account, PASSWORD, expect } from './lib.js';

export const options = shape();
const users = parseInt(__ENV.VUS || '8', 10);

export function setup() {
  const emails = [];
  for (let i = 0; i < users; i++) {
    const email = `k6-login-${__ENV.RUN_ID || Date.now()}-${i}@example.com`;
    account(email);
    emails.push(email);
  }
  return { emails };
}

export default function (data) {
  const email = data.emails[(__VU - 1) % data.emails.length];
  const res = postJson('/login', { Email: email, Password: PASSWORD });
  expect(res, 200, 'POST /login');
}

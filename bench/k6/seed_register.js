// The seed's own load test: POST /register with a new account each time.
import { options as shape, postJson, unique, PASSWORD, expect } from './lib.js';

export const options = shape();

export default function () {
  const res = postJson('/register', { Email: `${unique('k6-register')}@example.com`, Password: PASSWORD });
  expect(res, 201, 'POST /register');
}

// Shared by the k6 scripts: where the server is, the load's shape, and
// names unique per run, virtual user and iteration (nothing collides).
//
//   BASE_URL   the JSON side (default http://127.0.0.1:8080)
//   VUS        virtual users at the top of the ramp (default 8)
//   RAMP       time to ramp from 1 to VUS (default 2s)
//   DURATION   time held at VUS after the ramp (default 8s)
//   P95_MS     the p(95) threshold in ms (default 500)
import http from 'k6/http';
import { check, fail } from 'k6';

export const BASE = __ENV.BASE_URL || 'http://127.0.0.1:8080';
export const PASSWORD = 'correct horse battery';
const RUN = __ENV.RUN_ID || `${Date.now()}`;
const VUS = parseInt(__ENV.VUS || '8', 10);

export function options() {
  return {
    scenarios: {
      load: {
        executor: 'ramping-vus',
        startVUs: 1,
        stages: [
          { duration: __ENV.RAMP || '2s', target: VUS },
          { duration: __ENV.DURATION || '8s', target: VUS },
        ],
        gracefulRampDown: '2s',
      },
    },
    thresholds: {
      http_req_failed: ['rate<0.01'],
      checks: ['rate>0.99'],
      http_req_duration: [`p(95)<${__ENV.P95_MS || '500'}`],
    },
    // setup() registers with argon2: give it time on a busy machine.
    setupTimeout: '120s',
  };
}

/** A name unique to this run, virtual user and iteration. */
export function unique(what) {
  return `${what}-${RUN}-${__VU}-${__ITER}`;
}

export function postJson(path, body, headers) {
  return http.post(`${BASE}${path}`, JSON.stringify(body), {
    headers: Object.assign({ 'content-type': 'application/json' }, headers || {}),
  });
}

/** Registers `email` and logs in through the v1 routes; returns the token. */
export function account(email) {
  const creds = { email, password: PASSWORD };
  const reg = postJson('/v1/users', creds);
  if (reg.status !== 200) fail(`register ${email}: ${reg.status} ${reg.body}`);
  const login = postJson('/v1/login', creds);
  if (login.status !== 200) fail(`login ${email}: ${login.status} ${login.body}`);
  return login.json('token');
}

export function expect(res, status, what) {
  check(res, { [`${what} answers ${status}`]: (r) => r.status === status });
}

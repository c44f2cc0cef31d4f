#!/usr/bin/env bash
# The house rules a reader of src/ relies on (docs/architecture.md), checked:
# no import cycle among the files of src/, no SQL outside src/store/, and
# src/store/ imported only by the services, the loops and app.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/import_cycles.py src
sql=$(grep -rnE '"[^"]*\b(SELECT|INSERT|UPDATE|DELETE)\b' src --include='*.rs' | grep -v '^src/store/' || true)
if [ -n "$sql" ]; then
  echo "SQL outside src/store/:"; echo "$sql"; exit 1
fi
# A row read back by `*` keeps the column list its prepared statement had
# when a pooled connection first prepared it; a migration that adds a
# column then breaks it (src/store/urls.rs, url_columns!). Only unnest /
# json_each rows may be spread with `*`.
star=$(grep -rnE '(RETURNING \*|SELECT \* FROM [a-z_]+)' src --include='*.rs' | grep -viE 'SELECT \* FROM (unnest|json_each)' || true)
if [ -n "$star" ]; then
  echo 'SQL returning rows by * (name the columns):'; echo "$star"; exit 1
fi
users=$(grep -rlE 'crate::store|use crate::\{[^}]*\bstore\b' src --include='*.rs' | grep -vE '^src/(store/|service/|prober/|flush\.rs|deliver\.rs|health\.rs|app\.rs)' || true)
if [ -n "$users" ]; then
  echo "store imported outside the services, the loops and app.rs:"; echo "$users"; exit 1
fi
echo 'architecture: no import cycles, SQL only in src/store/ and no rows read by *, store used by services, loops and app.rs'

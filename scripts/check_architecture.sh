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
users=$(grep -rlE 'crate::store|use crate::\{[^}]*\bstore\b' src --include='*.rs' | grep -vE '^src/(store/|service/|prober/|flush\.rs|deliver\.rs|health\.rs|app\.rs)' || true)
if [ -n "$users" ]; then
  echo "store imported outside the services, the loops and app.rs:"; echo "$users"; exit 1
fi
echo "architecture: no import cycles, SQL only in src/store/, store used by services, loops and app.rs"

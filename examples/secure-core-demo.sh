#!/usr/bin/env bash
# The secure core, end to end, through the real CLI: init a home, store the Adult data
# encrypted with signed provenance, issue a scoped token, rotate keys, export a checkpoint,
# verify everything, then show that a flipped byte in a copy of the home is caught.
#
# The demo home is ./.bastion-demo-core (BASTION_DEMO_CORE_HOME to change it): throwaway,
# recreated on every run, and never the home of `make demo` (./.bastion-demo), which this
# script does not touch. Its passphrase and admin token are written beside it in
# ./.bastion-demo-core.env (mode 0600) so that the home can be looked at after the demo;
# both are replaced on the next run.
set -euo pipefail
cd "$(dirname "$0")/.."

home="${BASTION_DEMO_CORE_HOME:-.bastion-demo-core}"
export BASTION_HOME="$home"
secrets="${home}.env"
if [ -d "$home" ] && [ ! -f "$home/home.json" ] && [ -n "$(ls -A "$home")" ]; then
  echo "error: $home is not a Bastion home and not empty; this demo only replaces its own" \
    "home (remove $home, or set BASTION_DEMO_CORE_HOME to another folder)" >&2
  exit 2
fi
rm -rf "$home" "$secrets" "${home}-tampered" "${home}-checkpoint.json"
if [ -z "${BASTION_MASTER_KEY:-}" ]; then
  # No default passphrase exists: make a random one for this throwaway demo home.
  BASTION_MASTER_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(24))')
  export BASTION_MASTER_KEY
  echo "(a random passphrase was generated for this throwaway demo home)"
fi
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "bastion init"
BASTION_TOKEN=$(bastion init --json | python -c 'import json,sys; print(json.load(sys.stdin)["token"])')
export BASTION_TOKEN
(umask 077 && printf 'BASTION_MASTER_KEY=%q\nBASTION_TOKEN=%q\n' "$BASTION_MASTER_KEY" "$BASTION_TOKEN" > "$secrets")
echo "home ready at $(python -c 'import os, sys; print(os.path.abspath(sys.argv[1]))' "$home");"\
  "its passphrase and admin token are in $secrets (0600, demo only)"

step "store the Adult data, encrypted, each with a signed in-toto statement"
bastion artifact put examples/adult-income/data/adult.data --media-type text/csv
bastion artifact put examples/adult-income/data/adult.test --media-type text/csv
bastion artifact list

step "a consumer token limited to one deployment (shown once, stored as a hash)"
bastion token create --role consumer --deployment adult-income --expires-in 30d --json \
  | python -c 'import json,sys; d=json.load(sys.stdin); print({k: d[k] for k in ("id","principal","role","resource","expires")})'

step "rotate keys: new KEK, data keys re-wrapped, old KEK retired"
bastion keys rotate
bastion keys list

step "signed audit checkpoint, exported to a file kept elsewhere"
bastion audit checkpoint --export "${home}-checkpoint.json"

step "verify every artifact, statement and the audit log"
bastion verify
bastion audit verify --checkpoint "${home}-checkpoint.json"
bastion audit show --limit 12

step "tamper with a copy of the home: flip one byte of one blob"
cp -a "$home" "${home}-tampered"
blob=$(find "${home}-tampered/objects" -type f | sort | head -n 1)
python - "$blob" <<'PY'
import sys
p = sys.argv[1]
data = bytearray(open(p, "rb").read())
data[len(data) // 2] ^= 0x01
open(p, "wb").write(data)
PY
set +e
BASTION_HOME="${home}-tampered" bastion verify
rc=$?
set -e
echo "bastion verify on the tampered copy exited $rc (1 = a check failed, as it should)"
rm -rf "${home}-tampered"
[ "$rc" -eq 1 ]
step "done: the secure core works; see README.md for what each step proved"

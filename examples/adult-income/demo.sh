#!/usr/bin/env bash
# The main job: the Adult income pipeline from raw data to a signed, registered model,
# then every proof checked. Run through `make demo`; rerunning it shows the cache at work.
#
# The demo home is ./.bastion-demo (BASTION_DEMO_HOME to change it); `make demo-core` uses
# its own, ./.bastion-demo-core, so neither demo touches the other's. A demo needs a
# passphrase and a token and Bastion has no defaults for either, so on first use this
# script makes random ones and keeps them beside the home in ./.bastion-demo.env (mode
# 0600) for later demo runs. That file is a demo convenience: for real work, keep the
# passphrase in a secret manager (BASTION_MASTER_KEY) and the admin token somewhere safe.
#
# A home and its secrets file belong together. When one is missing, or the secrets no
# longer open the home, the script changes nothing, says what to do and exits 2.
set -euo pipefail
cd "$(dirname "$0")/../.."

export BASTION_HOME="${BASTION_DEMO_HOME:-.bastion-demo}"
secrets="${BASTION_HOME}.env"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
stop() { printf 'error: %s\n' "$*" >&2; exit 2; }
home_abs=$(python -c 'import os, sys; print(os.path.abspath(sys.argv[1]))' "$BASTION_HOME")
secrets_abs="${home_abs}.env"

if [ -f "$BASTION_HOME/home.json" ]; then
  if [ -z "${BASTION_TOKEN:-}" ] || [ -z "${BASTION_MASTER_KEY:-}" ]; then
    [ -f "$secrets" ] || stop "the demo home $home_abs has no secrets file $secrets_abs." \
      "Remove the home to start a new one (rm -rf '$home_abs'), or set BASTION_MASTER_KEY" \
      "and BASTION_TOKEN to the passphrase and token that made it."
    set -a; . "$secrets"; set +a
    from="$secrets_abs"
  else
    from="BASTION_MASTER_KEY and BASTION_TOKEN from your environment"
  fi
  # One cheap read proves the secrets still open this home (another demo, an older
  # version of this script or a hand-made home may have replaced it).
  if ! why=$(bastion runs list --limit 1 --json 2>&1 >/dev/null); then
    stop "the demo home $home_abs does not open with the passphrase and token in" \
      "$from (${why#error: }). The two do not belong together: remove both to start" \
      "a new demo home (rm -rf '$home_abs' '$secrets_abs'), or set BASTION_MASTER_KEY" \
      "and BASTION_TOKEN to the passphrase and token that made it."
  fi
else
  [ ! -e "$secrets" ] || stop "the secrets file $secrets_abs has no demo home" \
    "$home_abs beside it (the home was removed or moved). Remove it to start a new demo" \
    "home (rm '$secrets_abs'), or put the home it belongs to back at $home_abs."
  step "bastion init ($home_abs)"
  rm -rf "$BASTION_HOME"  # no home.json: an init that never finished
  BASTION_MASTER_KEY="${BASTION_MASTER_KEY:-$(python -c 'import secrets; print(secrets.token_urlsafe(24))')}"
  export BASTION_MASTER_KEY
  token=$(bastion init --json | python -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  export BASTION_TOKEN="$token"
  (umask 077 && printf 'BASTION_MASTER_KEY=%q\nBASTION_TOKEN=%q\n' "$BASTION_MASTER_KEY" "$token" > "$secrets")
  echo "demo home created; its passphrase and admin token are in $secrets_abs (0600, demo only)"
fi

step "bastion run examples/adult-income/pipeline.yaml"
set +e
bastion run examples/adult-income/pipeline.yaml
rc=$?
set -e

step "bastion verify (every artifact, signature, statement, and the audit log)"
bastion verify
step "bastion audit verify"
bastion audit verify
if [ "$rc" -eq 0 ]; then
  step "bastion verify --model adult-income (signature and provenance back to the pinned data)"
  bastion verify --model adult-income
fi

step "summary (bastion runs list --limit 1; bastion runs show RUN for any run)"
python - "$(bastion runs list --limit 1 --json)" <<'PY'
import json, sys
from rich.console import Console
from rich.table import Table

run = json.loads(sys.argv[1])["runs"][0]
doc = json.loads(open(run["report_json"]).read()) if run["report_json"] else {}
metrics = doc.get("metrics", {}).get("metrics", {})
out = Console()
table = Table(title=f"Adult income, run {run['run_id']}: {run['status']}")
table.add_column("what")
table.add_column("value")
for name, value in metrics.items():
    if isinstance(value, (int, float)):
        table.add_row(name, f"{value:.4f}")
for gate in run["gates"]:  # evaluate's gates, then each audit's (stage audit.<name>)
    mark = "pass" if gate["passed"] else "FAIL"
    value = "not measured" if gate["value"] is None else f"{gate['value']:.4f}"
    where = gate.get("stage", "evaluate")
    table.add_row(f"{where}: {gate['gate']}", f"{value} vs {gate['threshold']} ({mark})")
for name, result in (doc.get("audits") or {}).items():
    table.add_row(f"audit {name}", f"{'passed' if result['passed'] else 'FAILED'} in {result['seconds']:.1f} s")
stages = run["stages"]
cached = sum(1 for s in stages if s["cached"])
artifacts = sum(len(s.get("outputs", {})) for s in doc.get("run", {}).get("stages", []))
table.add_row("stages", f"{len(stages)} ({cached} reused from cache)")
table.add_row("artifacts (encrypted, signed)", str(artifacts))
table.add_row("model", run["model"] or "not released")
out.print(table)
# Whole absolute paths, one a line: never cut to the width of a table or a terminal.
for key, label in [
    ("report", "report (HTML)"),
    ("report_json", "report (JSON)"),
    ("model_card", "model card (HTML)"),
    ("model_card_md", "model card (Markdown)"),
]:
    print(f"{label}: {run[key] or '(none)'}")
PY
exit "$rc"

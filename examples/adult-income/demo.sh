#!/usr/bin/env bash
# The main job: the Adult income pipeline from raw data to a signed, registered model,
# then every proof checked. Run through `make demo`; rerunning it shows the cache at work.
#
# The demo home is ./.bastion-demo. A demo needs a passphrase and a token and Bastion has
# no defaults for either, so on first use this script makes random ones and keeps them in
# ./.bastion-demo.env (mode 0600) for later demo runs. That file is a demo convenience:
# for real work, keep the passphrase in a secret manager (BASTION_MASTER_KEY) and the
# admin token somewhere safe.
set -euo pipefail
cd "$(dirname "$0")/../.."

export BASTION_HOME="${BASTION_DEMO_HOME:-.bastion-demo}"
secrets="${BASTION_HOME}.env"
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

if [ ! -f "$BASTION_HOME/home.json" ]; then
  step "bastion init ($BASTION_HOME)"
  rm -rf "$BASTION_HOME" "$secrets"
  BASTION_MASTER_KEY="${BASTION_MASTER_KEY:-$(python -c 'import secrets; print(secrets.token_urlsafe(24))')}"
  export BASTION_MASTER_KEY
  token=$(bastion init --json | python -c 'import json,sys; print(json.load(sys.stdin)["token"])')
  (umask 077 && printf 'BASTION_MASTER_KEY=%q\nBASTION_TOKEN=%q\n' "$BASTION_MASTER_KEY" "$token" > "$secrets")
  echo "demo home created; its passphrase and admin token are in $secrets (0600, demo only)"
fi
if [ -z "${BASTION_TOKEN:-}" ] || [ -z "${BASTION_MASTER_KEY:-}" ]; then
  set -a; . "$secrets"; set +a
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

step "summary"
python - "$BASTION_HOME" <<'PY'
import json, pathlib, sys
from rich.console import Console
from rich.table import Table

home = pathlib.Path(sys.argv[1])
reports = sorted((home / "reports").glob("2*/report.json"), key=lambda p: p.stat().st_mtime)
doc = json.loads(reports[-1].read_text())
run, metrics = doc["run"], doc["metrics"].get("metrics", {})
out = Console()
table = Table(title=f"Adult income, run {run['run_id']}: {run['status']}")
table.add_column("what")
table.add_column("value")
for name, value in metrics.items():
    if isinstance(value, (int, float)):
        table.add_row(name, f"{value:.4f}")
for gate in doc["gates"]:
    mark = "pass" if gate["passed"] else "FAIL"
    table.add_row(f"gate {gate['gate']}", f"{gate['value']:.4f} vs {gate['threshold']} ({mark})")
stages = run.get("stages", [])
cached = sum(1 for s in stages if s.get("cached"))
artifacts = sum(len(s.get("outputs", {})) for s in stages)
table.add_row("stages", f"{len(stages)} ({cached} reused from cache)")
table.add_row("artifacts (encrypted, signed)", str(artifacts))
table.add_row("model", str(run.get("model") or "not released"))
table.add_row("report (HTML)", str(reports[-1].with_name("report.html").resolve()))
out.print(table)
PY
exit "$rc"

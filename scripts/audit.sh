#!/usr/bin/env bash
# Audit the Python dependencies for known vulnerabilities (pip-audit against PyPI's advisory
# data). A found vulnerability fails the run. Where the advisory service cannot be reached (as on
# an offline build host, whose package proxy serves packages but not advisories), pip-audit
# audits nothing; this script says so plainly instead of letting "no vulnerabilities" mislead.
set -uo pipefail
cd "$(dirname "$0")/.."
report=$(mktemp); trap 'rm -f "$report"' EXIT
.venv/bin/pip-audit --skip-editable --progress-spinner off --timeout 20 >"$report" 2>&1
rc=$?
skipped=$(grep -c 'could not be audited' "$report" || true)
audited=$(.venv/bin/pip list --format=freeze 2>/dev/null | grep -vc '^-e' || true)
if [ "$rc" -ne 0 ]; then
  cat "$report"
  echo "pip-audit: vulnerable dependencies found (above); upgrade them in pyproject.toml." >&2
  exit 1
fi
if [ "${skipped:-0}" -gt 0 ] && [ "$skipped" -ge "$((audited - 1))" ]; then
  echo "pip-audit: the advisory service is unreachable from this host; $skipped packages were NOT audited."
else
  echo "pip-audit: no known vulnerabilities ($skipped of $audited packages could not be audited)."
fi

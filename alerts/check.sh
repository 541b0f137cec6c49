#!/usr/bin/env bash
# check.sh validates the monitoring assets: the alert and recording rules and
# their unit tests, the Prometheus and Alertmanager configs of the compose
# stack, the Alertmanager routes, the runbook links and the dashboard queries.
#
# Usage: alerts/check.sh   (from any directory)
#
# Needs promtool and amtool (Debian: apt-get install prometheus
# prometheus-alertmanager) and python3. A missing tool is a failure, never a
# skip. Runs every check, then prints "check: N passed, M failed" and exits 1
# if any failed.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

for tool in promtool amtool python3; do
  if ! command -v "$tool" >/dev/null; then
    echo "check: $tool not found; install it (apt-get install prometheus" \
      "prometheus-alertmanager python3)" >&2
    exit 1
  fi
done

passed=0
failed=0

# step NAME COMMAND... runs one check and counts it.
step() {
  local name="$1"
  shift
  echo "--- $name"
  if "$@"; then
    passed=$((passed + 1))
  else
    echo "FAILED: $name" >&2
    failed=$((failed + 1))
  fi
}

# route_is RECEIVER LABEL=VALUE... checks where Alertmanager sends an alert.
route_is() {
  local receiver="$1"
  shift
  amtool config routes test --config.file=deploy/alertmanager/alertmanager.yml \
    --verify.receivers="$receiver" "$@" 2>/dev/null
}

# runbook_links checks that every alert links to a section of docs/alerts.md
# that exists.
runbook_links() {
  local rules=alerts/keyspend.rules.yml runbook=docs/alerts.md ok=0 anchor
  local alerts links
  alerts="$(grep -c '^ *- alert:' "$rules")"
  links="$(grep -c '^ *runbook_url: docs/alerts.md#' "$rules")"
  if [[ "$alerts" -ne "$links" ]]; then
    echo "$rules: $alerts alerts but $links runbook links" >&2
    ok=1
  fi
  for anchor in $(sed -n 's/^ *runbook_url: docs\/alerts.md#//p' "$rules"); do
    if ! grep -qi "^## ${anchor}\$" "$runbook"; then
      echo "$runbook: no section for #$anchor" >&2
      ok=1
    fi
  done
  return "$ok"
}

queries="$(mktemp)"
trap 'rm -f "$queries"' EXIT

step "promtool check rules" promtool check rules alerts/keyspend.rules.yml
step "promtool test rules" promtool test rules alerts/keyspend.rules.test.yml
step "promtool check config" promtool check config deploy/prometheus/prometheus.yml
step "amtool check-config" amtool check-config deploy/alertmanager/alertmanager.yml
step "critical alerts go to the webhook" route_is webhook severity=critical alertname=StoreDown
step "warnings go to the webhook" route_is webhook severity=warning alertname=BackupPoolLow
step "alerts without severity are dropped" route_is null alertname=Watchdog
step "runbook links" runbook_links
step "dashboard queries" deploy/check-dashboard-queries.sh -o "$queries"

echo "check: $passed passed, $failed failed"
[[ "$failed" -eq 0 ]]

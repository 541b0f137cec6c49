#!/usr/bin/env bash
# check-dashboard-queries.sh extracts every PromQL query of the Grafana
# dashboards and checks that each one names only metrics the exporter exposes
# or the recording rules in alerts/keyspend.rules.yml define.
#
# Usage: deploy/check-dashboard-queries.sh [-o FILE] [DASHBOARD.json ...]
#
# Writes the queries, one per line, to FILE (default: standard output), with
# the dashboard variables expanded so that Prometheus' HTTP API accepts them
# as they are: $job, $instance and $provider become the regex ".*", Grafana's
# interval variables become fixed durations, and a variable query
# label_values(SELECTOR, LABEL) becomes count by (LABEL) (SELECTOR). The
# default dashboards are grafana/dashboards/*.json. Exits 1 and names the
# panel when a query is empty, keeps an unknown variable or names an unknown
# metric. Needs python3 (standard library only).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out=""
if [[ "${1:-}" == "-o" ]]; then
  out="${2:?-o needs a file}"
  shift 2
fi
if [[ $# -eq 0 ]]; then
  set -- "$root"/grafana/dashboards/*.json
fi
command -v python3 >/dev/null || { echo "check-dashboard-queries: python3 not found" >&2; exit 1; }

queries="$(python3 - "$root/alerts/keyspend.rules.yml" "$@" <<'PY'
import json
import re
import sys

# The exporter's metrics (see the README's metric table); go_* and process_*
# are allowed by prefix below.
METRICS = {
    "keyspend_key_spend_usd", "keyspend_key_budget_usd", "keyspend_key_threshold_usd",
    "keyspend_key_up", "keyspend_key_last_success_timestamp_seconds", "keyspend_key_active",
    "keyspend_key_check_interval_seconds", "keyspend_key_generation",
    "keyspend_key_last_rotation_timestamp_seconds", "keyspend_key_rotations_total",
    "keyspend_checks_total", "keyspend_check_duration_seconds_bucket",
    "keyspend_check_duration_seconds_sum", "keyspend_check_duration_seconds_count",
    "keyspend_last_cycle_duration_seconds", "keyspend_last_cycle_keys",
    "keyspend_last_cycle_timestamp_seconds", "keyspend_keys", "keyspend_store_up",
    "keyspend_backup_keys_available", "keyspend_backup_keys_low_watermark",
    "keyspend_rotation_failures_total", "keyspend_build_info",
}
KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
    "unless", "offset", "inf", "nan",
}
# Grafana's built-in variables, replaced by values a range of 15s scrapes
# can answer.
BUILTINS = {
    "__rate_interval": "1m", "__interval": "1m", "__interval_ms": "60000",
    "__range": "1h", "__range_s": "3600", "__range_ms": "3600000",
}
LABEL_LIST = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
NAME = re.compile(r"(?<![\w:.])[A-Za-z_:][\w:]*")


def expand(expr, names):
    """Replaces $var, ${var}, ${var:fmt} and [[var]] with a value Prometheus accepts."""
    def value(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in BUILTINS:
            return BUILTINS[name]
        if name in names:
            return ".*"
        raise ValueError(f"unknown variable ${name}")
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)", value, expr)


def metric_names(expr):
    """Returns the metric names an expression selects."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    bare = re.sub(r"\{[^}]*\}", "", bare)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    bare = LABEL_LIST.sub("", bare)
    found = set()
    for m in NAME.finditer(bare):
        rest = bare[m.end():].lstrip()
        if rest.startswith("(") or m.group(0).lower() in KEYWORDS:
            continue
        found.add(m.group(0))
    return found


def panels(items):
    for p in items:
        yield p
        yield from panels(p.get("panels", []))


def main():
    rules = open(sys.argv[1]).read()
    known = METRICS | set(re.findall(r"^\s*-\s*record:\s*(\S+)", rules, re.M))
    failures, lines = [], []
    for path in sys.argv[2:]:
        with open(path) as f:
            dash = json.load(f)
        variables = dash.get("templating", {}).get("list", [])
        names = {v["name"] for v in variables}
        exprs = []
        for p in panels(dash.get("panels", [])):
            if p.get("type") == "row":
                continue
            targets = p.get("targets", [])
            if not targets:
                failures.append(f"{path}: panel {p.get('title')!r} has no query")
            for t in targets:
                exprs.append((f"panel {p.get('title')!r} query {t.get('refId')}",
                              t.get("expr", "")))
        for v in variables:
            if v.get("type") != "query":
                continue
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\)\s*", q, re.S)
            if not m:
                failures.append(f"{path}: variable {v['name']}: not label_values(): {q}")
                continue
            exprs.append((f"variable {v['name']}", f"count by ({m[2]}) ({m[1]})"))
        for where, expr in exprs:
            try:
                expr = " ".join(expand(expr, names).split())
            except ValueError as err:
                failures.append(f"{path}: {where}: {err}")
                continue
            if not expr:
                failures.append(f"{path}: {where}: empty query")
                continue
            unknown = {n for n in metric_names(expr) - known
                       if not n.startswith(("go_", "process_"))}
            if unknown:
                failures.append(f"{path}: {where}: unknown metric {', '.join(sorted(unknown))}")
            lines.append(expr)
    if not lines:
        failures.append("no query found")
    for f in failures:
        print(f"check-dashboard-queries: {f}", file=sys.stderr)
    if failures:
        sys.exit(1)
    print("\n".join(lines))


main()
PY
)"

if [[ -n "$out" ]]; then
  printf '%s\n' "$queries" >"$out"
else
  printf '%s\n' "$queries"
fi

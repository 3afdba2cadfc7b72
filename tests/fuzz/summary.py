"""Summarise schemathesis NDJSON reports: test cases, requests and statuses per operation,
and every failed check. Exit status 1 if any check failed.

Usage: summary.py LABEL=REPORT.ndjson [LABEL=REPORT.ndjson ...]
"""

import collections
import json
import sys


def read(path):
    """Per documented operation: case ids, status counts, failed checks (name, case id, status)."""
    cases = collections.defaultdict(set)
    statuses = collections.defaultdict(collections.Counter)
    failures = []
    with open(path, encoding="utf-8") as report:
        for line in report:
            event = json.loads(line)
            finished = event.get("ScenarioFinished")
            if not finished or finished.get("status") == "skip":
                continue
            recorder = finished["recorder"]
            # The documented operation; its cases include other methods on the same path.
            operation = recorder["label"]
            for case_id in recorder.get("cases", {}):
                cases[operation].add(case_id)
                interaction = recorder.get("interactions", {}).get(case_id)
                status = None
                if interaction and interaction.get("response"):
                    status = interaction["response"]["status_code"]
                    statuses[operation][status] += 1
                for check in recorder.get("checks", {}).get(case_id, []):
                    if check["status"] == "failure":
                        failures.append((operation, check["name"], case_id, status))
    return cases, statuses, failures


def main():
    total_cases = 0
    all_failures = []
    totals = []
    print("| run | operation | cases | statuses |")
    print("|---|---|---|---|")
    for argument in sys.argv[1:]:
        label, path = argument.split("=", 1)
        cases, statuses, failures = read(path)
        run_total = collections.Counter()
        for operation in sorted(cases):
            run_total.update(statuses[operation])
            seen = " ".join(f"{s}×{n}" for s, n in sorted(statuses[operation].items()))
            print(f"| {label} | {operation} | {len(cases[operation])} | {seen} |")
            total_cases += len(cases[operation])
        all_failures += [(label, *f) for f in failures]
        totals.append((label, sum(len(c) for c in cases.values()), len(cases), run_total, len(failures)))
    print()
    print("| run | operations | cases | statuses | failed checks |")
    print("|---|---|---|---|---|")
    for label, cases, operations, seen, failed in totals:
        statuses_text = " ".join(f"{s}×{n}" for s, n in sorted(seen.items()))
        print(f"| {label} | {operations} | {cases} | {statuses_text} | {failed} |")
    print()
    for label, operation, check, case_id, status in all_failures:
        print(f"FAILED {label} {operation}: {check} (case {case_id}, status {status})")
    server_errors = sum(1 for f in all_failures if f[2] == "not_a_server_error")
    print(
        f"schemathesis: {total_cases} cases, {len(all_failures)} failed checks, "
        f"{server_errors} server errors"
    )
    return 1 if all_failures else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env bash
# drain-hook.sh NODE [-- EXTRA_KUBECTL_DRAIN_ARGS...]
#
# Drain NODE, run the post-drain smoke suites, and uncordon NODE only when
# they are all green. Exits with the harness's status so the calling roll
# script can stop on anything but 0:
#   0  all green, node uncordoned
#   1  a check failed           (node left cordoned)
#   2  usage or config error    (node left cordoned)
#   3  harness could not run    (node left cordoned)
#   4  kubectl drain or uncordon failed
#
# Environment (all optional):
#   KUBECTL               kubectl binary               (default: kubectl)
#   E2ETESTS              e2etests binary              (default: e2etests)
#   DRAIN_TIMEOUT         kubectl drain --timeout      (default: 15m)
#   E2E_TIMEOUT           seconds for after-drain      (default: 1800)
#   E2E_KILL_AFTER        seconds from SIGTERM to SIGKILL, time to delete (default: 90)
#   E2E_AFTER_DRAIN_ARGS  extra after-drain args, split on whitespace,
#                         e.g. "--clouds prod-* --report-dir /var/lib/e2e"
#   E2E_WATCHER           URL of an `e2etests watch` (e.g. http://e2etests-watch:9477):
#                         then the node is drained only while the watcher's gate is
#                         open, and `e2etests gate` judges the drain instead of
#                         after-drain (same 0-3 exit statuses)
set -euo pipefail

readonly DRAIN_FAILED=4

usage() {
    echo "usage: $0 NODE [-- EXTRA_KUBECTL_DRAIN_ARGS...]" >&2
    exit 2
}

[ "$#" -ge 1 ] || usage
node=$1
shift
case "$node" in
    "" | -*) usage ;;
esac
if [ "$#" -gt 0 ]; then
    [ "$1" = "--" ] || usage
    shift
fi

kubectl=${KUBECTL:-kubectl}
e2etests=${E2ETESTS:-e2etests}
after_drain_args=()
if [ -n "${E2E_AFTER_DRAIN_ARGS:-}" ]; then
    read -r -a after_drain_args <<<"$E2E_AFTER_DRAIN_ARGS"
fi

watcher=${E2E_WATCHER:-}
if [ -n "$watcher" ]; then
    # Between drains the watcher may have seen a cloud break: never drain on red or unknown.
    pre=0
    timeout 60 "$e2etests" gate --watcher "$watcher" || pre=$?
    if [ "$pre" -ne 0 ]; then
        case "$pre" in 1 | 2 | 3) ;; *) pre=3 ;; esac
        echo "drain-hook: watcher at $watcher is not green (exit $pre); $node not drained, stop the roll" >&2
        exit "$pre"
    fi
fi

if ! "$kubectl" drain "$node" --ignore-daemonsets --delete-emptydir-data \
    --timeout="${DRAIN_TIMEOUT:-15m}" "$@"; then
    echo "drain-hook: kubectl drain $node failed; node may be cordoned, not running checks" >&2
    exit "$DRAIN_FAILED"
fi
# Taken after the drain returns: the harness only accepts evidence (service
# heartbeats, RPC replies) newer than this, i.e. from after the pods moved.
drained_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# Our own run id, so that afterwards we can sweep exactly what this run made.
run_id="drain-$(date -u +%Y%m%d%H%M%S)-$$"

# `timeout` bounds a harness that hangs; its 124/137 are reported as 3, since
# the harness could not finish. After its SIGTERM the harness deletes what it
# created: the grace before SIGKILL covers a delete (delete_timeout, 60 s by
# default). `|| rc=$?` keeps set -e from ending us here.
rc=0
if [ -n "$watcher" ]; then
    # The watcher boots its canaries and deletes them itself: nothing of ours to sweep.
    # Its own --timeout comes first, so its verdict (with the culprit) is what we get.
    timeout --kill-after=10 "$((${E2E_TIMEOUT:-1800} + 30))" \
        "$e2etests" gate --watcher "$watcher" --node "$node" --drained-at "$drained_at" \
        --timeout "${E2E_TIMEOUT:-1800}" || rc=$?
else
    timeout --kill-after="${E2E_KILL_AFTER:-90}" "${E2E_TIMEOUT:-1800}" \
        "$e2etests" after-drain --node "$node" --drained-at "$drained_at" --run-id "$run_id" \
        ${after_drain_args[@]+"${after_drain_args[@]}"} || rc=$?

    # Whatever the verdict: remove what a killed or interrupted run left behind.
    # Only this run's servers (its id is in their name and mark), so at any age.
    if ! timeout 300 "$e2etests" sweep --run-id "$run_id" --older-than 0s; then
        echo "drain-hook: sweep of run $run_id failed; run 'e2etests sweep --run-id $run_id'" >&2
    fi
fi
case "$rc" in
    0 | 1 | 2 | 3) ;;
    124 | 137)
        echo "drain-hook: e2etests after-drain timed out after ${E2E_TIMEOUT:-1800}s" >&2
        rc=3
        ;;
    *)
        echo "drain-hook: e2etests after-drain exited $rc (not in the 0-3 contract)" >&2
        rc=3
        ;;
esac

case "$rc" in
    0)
        if ! "$kubectl" uncordon "$node"; then
            echo "drain-hook: checks passed but kubectl uncordon $node failed" >&2
            exit "$DRAIN_FAILED"
        fi
        echo "drain-hook: $node passed, uncordoned"
        ;;
    1)
        echo "drain-hook: a check failed after draining $node; node left cordoned, stop the roll" >&2
        ;;
    *)
        echo "drain-hook: harness could not judge $node (exit $rc); node left cordoned, stop the roll" >&2
        ;;
esac
exit "$rc"

#!/bin/sh
# The log file under rotation: renamed, then SIGHUP. No line is lost or
# written anywhere else, not even by a writer that stalled between picking
# the log's descriptor and writing to it (stall_write.so holds such writers
# on purpose, as a preempted thread would be held); the old file gets
# nothing once the reload is done; and a log file that cannot be opened
# keeps the old one, saying so once.
. "$TESTS_SRCDIR/server/lib.sh"
SHIM="$TESTS_BUILDDIR/server/stall_write.so"
if [ ! -f "$SHIM" ]; then
    echo "SKIP: $SHIM is not built (make check builds it)"
    exit 77
fi
make_pki
setup_db
mkdir "$T/logs"
SERVER_LOG="$T/logs/certgate.log"
OLD="$T/logs/certgate.log.1"
STALLS=3

# wait_for CMD...: up to 20 s for CMD to succeed.
wait_for() {
    for _ in $(seq 1 200); do
        "$@" && return 0
        sleep 0.1
    done
    return 1
}
# notes WORD: how many times stall_write.so noted WORD (stall, done, failed).
notes() {
    if [ -f "$T/stalls" ]; then grep -c "^$1\$" "$T/stalls"; else echo 0; fi
}
held() { [ "$(notes stall)" -ge 1 ]; }
let_go() { [ "$(($(notes done) + $(notes failed)))" = "$STALLS" ]; }
has_line() { grep -q "$2" "$1" 2>/dev/null; }

# Only the server gets the shim: request lines of /stall-* wait 3 s after
# the descriptor was read (two of them on one worker thread wait in turn).
export CG_STALL_MATCH='"path":"/stall-' CG_STALL_MS=3000 CG_STALL_NOTE="$T/stalls"
ASAN_SAVED=${ASAN_OPTIONS-}
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}verify_asan_link_order=0"
export LD_PRELOAD="$SHIM"
start_server --threads 8
unset LD_PRELOAD CG_STALL_MATCH CG_STALL_MS CG_STALL_NOTE
ASAN_OPTIONS=$ASAN_SAVED

# rotation_under_load_loses_no_line: six keep-alive clients send requests
# until told to stop; three /stall-N requests hold their log writers, the
# first across the rename and the SIGHUP. Every X-Request-Id a client got
# must be in one of the two files, once.
PYTHONPATH="$TESTS_SRCDIR/server" python3 - "$URL" "$PKI" "$T/stop" "$STALLS" \
    >"$T/load.out" 2>"$T/load.err" <<'PY' &
import os, sys, time
from parallel import connect, run
url, pki, stop, stalls = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
deadline = time.time() + 30
def worker(i):
    ids, errors = [], 0
    paths = None
    if i < stalls:
        # after the others have logged some lines to the file to be renamed
        time.sleep(0.5)
        paths = ["/stall-%d" % i]
    conn = connect(url, pki)
    n = 0
    while time.time() < deadline and n < 2000:
        if paths is None and os.path.exists(stop):
            break
        if paths is not None and not paths:
            break
        path = paths.pop() if paths else "/healthz"
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            ids.append(r.getheader("X-Request-Id"))
            time.sleep(0.005)  # steady load, not a benchmark
        except Exception:
            errors += 1
            conn.close()
            conn = connect(url, pki)
        n += 1
    return [(ids, errors)]
out = run(6 + stalls, worker)
print(" ".join(i for ids, _ in out for i in ids))
print(sum(e for _, e in out))
PY
load=$!
if wait_for held; then
    pass "a log writer is held with the descriptor in hand"
else
    fail "no log writer was held"
fi
mv "$SERVER_LOG" "$OLD"
kill -HUP "$SERVER_PID"
wait_for has_line "$SERVER_LOG" '"event":"reloaded"' &&
    pass "SIGHUP: the reload is logged to the new file" || fail "no reloaded line in the new file"
old_size=$(wc -c <"$OLD")
# The held writers let go (3 s after each began), then the load stops.
wait_for let_go ||
    fail "held writers still held: $(cat "$T/stalls")"
[ "$(notes done)" = "$STALLS" ] && pass "each held writer wrote its whole line" ||
    fail "held writers: $(notes done) wrote, $(notes failed) failed"
sleep 0.3
touch "$T/stop"
wait "$load"
after=""
for _ in 1 2 3; do
    req "$URL/healthz"
    after="$after $(header X-Request-Id)"
done
stop_server
errors=$(sed -n 2p "$T/load.out")
[ "$errors" = 0 ] && pass "no client saw an error during the rotation" ||
    fail "$errors client errors: $(tail -n 3 "$T/load.err")"
python3 - "$OLD" "$SERVER_LOG" "$T/load.out" "$after" >"$T/verdict" <<'PY'
import json, sys
old, new, after = sys.argv[1], sys.argv[2], sys.argv[4].split()
ids = open(sys.argv[3]).readline().split()
where, torn = {}, 0
for name, path in (("old", old), ("new", new)):
    for line in open(path, "rb"):
        try:
            j = json.loads(line)
        except ValueError:
            torn += 1
            continue
        if j.get("event") == "request":
            where.setdefault(j["request_id"], []).append((name, j["path"]))
lost = [i for i in ids + after if i not in where]
twice = [i for i, w in where.items() if len(w) > 1]
in_old = sum(1 for i in ids if where.get(i, [("", "")])[0][0] == "old")
in_new = sum(1 for i in ids if where.get(i, [("", "")])[0][0] == "new")
held = [w[0][0] for w in where.values() if w[0][1].startswith("/stall-")]
late = [i for i in after if where.get(i, [("", "")])[0][0] != "new"]
print(len(ids), len(lost), len(twice), torn, in_old, in_new, held.count("new"), len(late))
PY
read -r n lost twice torn in_old in_new held_new late <"$T/verdict"
[ "$n" -gt 100 ] && pass "the clients got $n answers" || fail "only $n answers"
[ "$lost" = 0 ] && pass "every answered request has its log line ($in_old old file, $in_new new)" ||
    fail "$lost of $n request lines are in neither file"
[ "$twice" = 0 ] && [ "$torn" = 0 ] && pass "each line once and whole" ||
    fail "$twice lines twice, $torn torn lines"
[ "$in_old" -gt 0 ] && [ "$in_new" -gt 0 ] && pass "the rotation happened under load" ||
    fail "old file $in_old lines, new file $in_new"
[ "$held_new" = "$STALLS" ] &&
    pass "the lines of writers held across the reload went to the new file" ||
    fail "$held_new of $STALLS held lines in the new file"
[ "$(wc -c <"$OLD")" = "$old_size" ] && pass "the old file got nothing after the reload" ||
    fail "the old file grew from $old_size to $(wc -c <"$OLD") bytes after the reload"
[ "$late" = 0 ] && pass "requests after the reload are logged to the new file" ||
    fail "$late later request lines not in the new file"

# a_log_file_that_cannot_be_opened_keeps_the_old_one: the new path is a
# directory; the reload logs that once, to the file still open, and lines
# keep going there; once the path can be opened again, a SIGHUP uses it.
start_server
mv "$SERVER_LOG" "$OLD"
mkdir "$SERVER_LOG"
kill -HUP "$SERVER_PID"
wait_for has_line "$OLD" '"event":"reloaded"' || fail "no reloaded line after the failed reopen"
req "$URL/healthz"
id=$(header X-Request-Id)
n=$(grep -c '"event":"log_reopen_failed"' "$OLD")
[ "$n" = 1 ] && pass "a log file that cannot be opened is reported once, in the old file" ||
    fail "$n log_reopen_failed lines"
grep '"event":"log_reopen_failed"' "$OLD" | grep -q "logs/certgate.log" &&
    pass "naming the file" || fail "log_reopen_failed does not name the file"
wait_for has_line "$OLD" "\"request_id\":\"$id\"" &&
    pass "and request lines keep going to the old file" || fail "request $id not in the old file"
rmdir "$SERVER_LOG"
kill -HUP "$SERVER_PID"
wait_for has_line "$SERVER_LOG" '"event":"reloaded"' &&
    pass "once the path can be opened, SIGHUP logs to it again" || fail "no reloaded line in the new file"
stop_server
[ "$SERVER_RC" = 0 ] && pass "the server stops cleanly" || fail "exit $SERVER_RC"

done_testing

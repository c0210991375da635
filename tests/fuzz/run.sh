#!/bin/sh
# Runs every libFuzzer harness of tests/fuzz for SECONDS each (default 60).
# Per target: first the regression inputs of tests/fuzz/regress/TARGET/
# (each once: a crash fixed once must stay fixed), then fuzzing from the
# committed seeds (corpus/TARGET/), the seeds gen-seeds.sh makes now with a
# test PKI generated at run time, and what earlier runs in the same build
# directory found.
#
# Usage: tests/fuzz/run.sh [SECONDS] [TARGET...]
#   SECONDS     how long each target fuzzes (0: replay the regression
#               inputs and the seeds only)
#   TARGET      fuzz_bundle, fuzz_crl, ... (default: all)
# Environment:
#   FUZZ_BUILDDIR  the build directory (default: build/fuzz), configured
#                  here with CC=clang --enable-fuzzing unless it already is
#   FUZZ_TIMEOUT   seconds one input may take before it counts as a hang (25)
#   FUZZ_RSS_MB    memory limit of a target (2048)
#
# Exits 1 when a target crashes, leaks, hangs or runs out of memory, and
# names the input that does it: FUZZ_BUILDDIR/tests/fuzz/crashes/TARGET/.
# Replay it with: FUZZ_BUILDDIR/tests/fuzz/TARGET FILE
set -eu

top=$(cd "$(dirname "$0")/../.." && pwd)
src="$top/tests/fuzz"
secs=${1:-60}
[ $# -gt 0 ] && shift
case "$secs" in
'' | *[!0-9]*)
    echo "fuzz: SECONDS must be a whole number, not '$secs' (usage: run.sh [SECONDS] [TARGET...])" >&2
    exit 2
    ;;
esac
all="fuzz_bundle fuzz_crl fuzz_dn fuzz_verify fuzz_script fuzz_target fuzz_routes fuzz_table_query"
targets=${*:-$all}
b=${FUZZ_BUILDDIR:-$top/build/fuzz}
timeout=${FUZZ_TIMEOUT:-25}
rss=${FUZZ_RSS_MB:-2048}
jobs=$(nproc 2>/dev/null || echo 2)

# The build: the same libcertgate.a as the server, instrumented for libFuzzer.
if [ ! -f "$b/config.status" ]; then
    if ! command -v "${FUZZ_CC:-clang}" >/dev/null 2>&1; then
        echo "fuzz: ${FUZZ_CC:-clang} not found: install clang and libclang-rt-14-dev" >&2
        echo "fuzz: (sh contrib/install-deps.sh --test installs them)" >&2
        exit 1
    fi
    [ -x "$top/configure" ] || (cd "$top" && autoreconf -fi)
    mkdir -p "$b"
    echo "fuzz: configuring $b (CC=${FUZZ_CC:-clang} --enable-fuzzing)"
    (cd "$b" && CC=${FUZZ_CC:-clang} "$top/configure" --enable-fuzzing --enable-werror \
        >configure.out 2>&1) || {
        cat "$b/configure.out"
        exit 1
    }
fi
if ! grep -q '^S\["ENABLE_FUZZING_TRUE"\]=""' "$b/config.status"; then
    echo "fuzz: $b is not configured with --enable-fuzzing: set FUZZ_BUILDDIR to another directory" >&2
    exit 1
fi
echo "fuzz: building the harnesses in $b"
if ! { make -C "$b/src" -j"$jobs" libcertgate.a && make -C "$b/tests/fuzz" -j"$jobs"; } \
    >"$b/fuzz-make.out" 2>&1; then
    cat "$b/fuzz-make.out"
    exit 1
fi

fz="$b/tests/fuzz"
work="$fz/work"
mkdir -p "$work/corpus" "$fz/crashes"
rm -rf "$work/seeds"
if sh "$src/gen-seeds.sh" "$work/seeds" >"$work/gen-seeds.out" 2>&1; then
    echo "fuzz: seeds made with a test PKI generated now ($(find "$work/seeds" -type f | wc -l) files)"
else
    cat "$work/gen-seeds.out"
    echo "fuzz: gen-seeds.sh failed: the committed seeds only" >&2
fi

# Leaks are failures too; the libraries' process-lifetime allocations are not.
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$top/tests/lsan.supp:print_suppressions=0}
export ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS

# One line of figures from a libFuzzer log.
figures() {
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$1" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$1" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$1" | tail -n 1 | sed 's/cov: //')
    ft=$(grep -o 'ft: [0-9]*' "$1" | tail -n 1 | sed 's/ft: //')
    corp=$(grep -o 'corp: [0-9]*' "$1" | tail -n 1 | sed 's/corp: //')
    echo "${runs:-0} runs, ${rate:-0} exec/s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}"
}

# What failed and where the input is.
report() {
    t=$1
    log=$2
    echo "---- $t: last lines of $log"
    grep -v '^#[0-9]' "$log" | tail -n 40
    art=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
    [ -z "$art" ] && art=$(sed -n 's/^Running: \(.*\)$/\1/p' "$log" | tail -n 1)
    if [ -n "$art" ]; then
        echo "fuzz: $t FAILED; reproducer: $art"
        echo "fuzz: replay it with: $fz/$t $art"
    else
        echo "fuzz: $t FAILED (see $log)"
    fi
}

failed=""
for t in $targets; do
    if [ ! -x "$fz/$t" ]; then
        echo "fuzz: no harness $t (targets: $all)" >&2
        exit 2
    fi
    log="$work/$t.log"
    opts="-timeout=$timeout -rss_limit_mb=$rss -print_final_stats=1"
    [ -f "$src/dict/$t.dict" ] && opts="$opts -dict=$src/dict/$t.dict"
    mkdir -p "$work/corpus/$t" "$fz/crashes/$t" "$work/seeds/$t"
    # The regression inputs, each once.
    if [ -d "$src/regress/$t" ] && [ -n "$(ls -A "$src/regress/$t")" ]; then
        # shellcheck disable=SC2086 # opts holds several flags
        if ! "$fz/$t" $opts "$src/regress/$t"/* >"$log" 2>&1; then
            report "$t" "$log"
            failed="$failed $t"
            continue
        fi
        echo "fuzz: $t: $(find "$src/regress/$t" -type f | wc -l) regression inputs pass"
    fi
    if [ "$secs" -eq 0 ]; then
        set -- -runs=0
    else
        set -- -max_total_time="$secs"
    fi
    # shellcheck disable=SC2086
    if (cd "$fz/crashes/$t" && "$fz/$t" $opts "$@" -artifact_prefix="$fz/crashes/$t/" \
        "$work/corpus/$t" "$src/corpus/$t" "$work/seeds/$t") >"$log" 2>&1; then
        echo "fuzz: $t: $(figures "$log")"
    else
        echo "fuzz: $t: $(figures "$log")"
        report "$t" "$log"
        failed="$failed $t"
    fi
done
if [ -n "$failed" ]; then
    echo "fuzz: failed:$failed (inputs kept in $fz/crashes/; when fixed, add each to tests/fuzz/regress/TARGET/)"
    exit 1
fi
echo "fuzz: every target ran ${secs}s without a crash, leak or hang"

#!/bin/sh
# The whole test suite from scratch: dependencies, a -Werror build, the man
# page and certgate-pki checks and `make check`, then `make check-pg` (the
# CLI and server suites again on PostgreSQL: tests/pg.sh starts a private
# server; in this pass only, for the wall time), then an AddressSanitizer +
# UndefinedBehaviorSanitizer build and `make check` again, then every libFuzzer
# harness of tests/fuzz for FUZZ_SECONDS (default 15) each. Builds out of tree
# in ./build/ so the source tree stays clean; a source tree configured in
# place (./configure run in it) is cleaned with `make distclean` first,
# since configure refuses to build elsewhere from it. Safe to re-run.
# Usage: contrib/run-tests.sh [--quick] (--quick: skip the sanitizer pass and
# the fuzzing; FUZZ_SECONDS=0 replays the fuzz seeds and regression inputs only).
set -eu

top=$(cd "$(dirname "$0")/.." && pwd)
quick=no
[ "${1:-}" = "--quick" ] && quick=yes

sh "$top/contrib/install-deps.sh" --test

cd "$top"
if [ -f "$top/config.status" ]; then
    echo "run-tests: $top was configured in place; running make distclean there first"
    echo "run-tests: (the builds go to $top/build/; an in-place build cannot coexist with them)"
    make -C "$top" distclean >/dev/null 2>&1 || {
        echo "run-tests: make distclean failed in $top: remove config.status and Makefile there" >&2
        exit 1
    }
fi
autoreconf -fi

# newman for the Postman test, downloaded once for both passes (and kept
# across runs) instead of once per build directory.
NEWMAN_CACHE=${NEWMAN_CACHE:-$top/build/node}
export NEWMAN_CACHE

jobs=$(nproc 2>/dev/null || echo 2)
started=$(date +%s)

# step TEXT: a stage's heading, with the seconds since the start (CI must
# stay well under 20 minutes).
step() {
    echo "== [$(($(date +%s) - started)) s] $*"
}

# count_results FILE: the PASS/FAIL lines of a make check output, and the totals.
count_results() {
    grep -E '^(PASS|FAIL|SKIP|ERROR|XPASS|XFAIL):' "$1" || true
    p=$(sed -n 's/^# PASS: *//p' "$1" | tail -n 1)
    f=$(sed -n 's/^# FAIL: *//p' "$1" | tail -n 1)
    e=$(sed -n 's/^# ERROR: *//p' "$1" | tail -n 1)
    sk=$(sed -n 's/^# SKIP: *//p' "$1" | tail -n 1)
    TOTAL_PASS=$((TOTAL_PASS + ${p:-0}))
    TOTAL_FAIL=$((TOTAL_FAIL + ${f:-0} + ${e:-0}))
    TOTAL_SKIP=$((TOTAL_SKIP + ${sk:-0}))
}

run_pass() {
    name=$1
    shift
    dir="$top/build/$name"
    rm -rf "$dir"
    mkdir -p "$dir"
    step "$name: configure $*"
    (cd "$dir" && "$top/configure" --enable-werror "$@" >configure.out 2>&1) || {
        cat "$dir/configure.out"
        exit 1
    }
    step "$name: make"
    make -C "$dir" -j"$jobs" >"$dir/make.out" 2>&1 || {
        cat "$dir/make.out"
        exit 1
    }
    if [ "$name" = werror ]; then
        step "$name: man page documents every command and flag"
        if sh "$top/contrib/check-manpage.sh" "$dir/src/certgate" "$dir/doc/certgate.1"; then
            TOTAL_PASS=$((TOTAL_PASS + 1))
        else
            echo "tests: $TOTAL_PASS passed, 1 failed"
            exit 1
        fi
        step "$name: contrib/pki/certgate-pki"
        if sh "$top/contrib/check-pki.sh" "$dir/src/certgate" >"$dir/check-pki.out" 2>&1; then
            tail -n 1 "$dir/check-pki.out"
            TOTAL_PASS=$((TOTAL_PASS + 1))
        else
            cat "$dir/check-pki.out"
            echo "tests: $TOTAL_PASS passed, 1 failed"
            exit 1
        fi
    fi
    step "$name: make check"
    status=0
    make -C "$dir" -j"$jobs" check >"$dir/check.out" 2>&1 || status=$?
    count_results "$dir/check.out"
    if [ "$name" = werror ] && [ "$status" -eq 0 ]; then
        step "$name: make check-pg (the CLI and server suites on PostgreSQL, and the multi-node ones)"
        make -C "$dir" -j"$jobs" check-pg >"$dir/check-pg.out" 2>&1 || status=$?
        count_results "$dir/check-pg.out"
    fi
    # The x509-limbo vectors live beside the project (../shared), not in
    # it: a clone without them skips that one suite, and says so.
    if [ ! -f "$top/../shared/x509-limbo/limbo-client.json" ] &&
        grep -q '^SKIP: unit/check_limbo' "$dir/check.out"; then
        echo "run-tests: $top/../shared/x509-limbo is absent: the x509-limbo suite was skipped"
        ALLOWED_SKIP=$((ALLOWED_SKIP + 1))
    fi
    if [ "$status" -ne 0 ]; then
        tail -n 30 "$dir/check.out"
        [ -f "$dir/check-pg.out" ] && tail -n 30 "$dir/check-pg.out"
        for log in $(find "$dir/tests" -name '*.log' ! -name test-suite.log); do
            if grep -q '^:test-result: \(FAIL\|ERROR\)' "${log%.log}.trs" 2>/dev/null; then
                echo "---- $log"
                tail -n 60 "$log"
            fi
        done
        echo "tests: $TOTAL_PASS passed, $((TOTAL_FAIL > 0 ? TOTAL_FAIL : 1)) failed"
        exit 1
    fi
}

TOTAL_PASS=0
TOTAL_FAIL=0
TOTAL_SKIP=0
ALLOWED_SKIP=0
# Static checks first: they are quick and fail early.
step "static checks: clang-format, cppcheck"
# The C sources: tracked or new (not ignored) in git; outside git, those on
# disk but the generated ones (src/schema_sql.c, config.h).
c_sources() {
    if git -C "$top" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git -C "$top" ls-files --cached --others --exclude-standard -- 'src/*.[ch]' \
            'tests/unit/*.[ch]' 'tests/fuzz/*.[ch]'
    else
        find src tests/unit tests/fuzz -name '*.[ch]' ! -name schema_sql.c ! -name config.h \
            -print | sort
    fi
}
if command -v clang-format >/dev/null 2>&1; then
    # shellcheck disable=SC2046 # file names have no spaces
    if ! clang-format --style=file --dry-run --Werror $(c_sources); then
        echo "run-tests: code is not formatted: clang-format -i --style=file FILES"
        echo "tests: 0 passed, 1 failed"
        exit 1
    fi
fi
if command -v cppcheck >/dev/null 2>&1; then
    if ! cppcheck --quiet --enable=warning,portability --inline-suppr --error-exitcode=1 \
        --suppress=missingIncludeSystem -I src src; then
        echo "run-tests: cppcheck found problems in src/"
        echo "tests: 0 passed, 1 failed"
        exit 1
    fi
fi

run_pass werror
if [ "$quick" = no ]; then
    ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$top/tests/lsan.supp:print_suppressions=0}
    export ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS
    # The scanners probe the TLS policy (GnuTLS), which the -Werror pass has
    # checked already; under the sanitizers they would only add a minute.
    TLS_CHECK=none
    export TLS_CHECK
    run_pass sanitizers --enable-sanitizers
    unset TLS_CHECK
    grep -q '^SKIP: server/scanners.sh' "$top/build/sanitizers/check.out" &&
        ALLOWED_SKIP=$((ALLOWED_SKIP + 1))
    # Fuzzing: each harness replays its regression inputs, then fuzzes for
    # FUZZ_SECONDS from its seeds, in a clang build of its own; one test.
    step "fuzz: tests/fuzz/run.sh ${FUZZ_SECONDS:-15} (each target)"
    rm -rf "$top/build/fuzz"
    if FUZZ_BUILDDIR="$top/build/fuzz" sh "$top/tests/fuzz/run.sh" "${FUZZ_SECONDS:-15}"; then
        TOTAL_PASS=$((TOTAL_PASS + 1))
    else
        echo "tests: $TOTAL_PASS passed, $((TOTAL_FAIL + 1)) failed"
        exit 1
    fi
fi
if [ -n "${CI:-}" ] && [ "$TOTAL_SKIP" -gt "$ALLOWED_SKIP" ]; then
    echo "run-tests: $((TOTAL_SKIP - ALLOWED_SKIP)) tests skipped in CI: a prerequisite is missing" >&2
    echo "tests: $TOTAL_PASS passed, $((TOTAL_SKIP - ALLOWED_SKIP)) failed"
    exit 1
fi
step "done"
echo "tests: $TOTAL_PASS passed, $TOTAL_FAIL failed, $TOTAL_SKIP skipped"

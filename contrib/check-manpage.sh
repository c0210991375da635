#!/bin/sh
# Checks that the man page documents every command and flag of the binary:
# every `--flag` printed by `certgate --help`, by each command's `--help`
# and by `certgate serve --help`, every command, `--version`, and the HTTP
# endpoints. Prints what is missing; exit 0 when nothing is, 1 otherwise,
# 2 on a usage error.
#   usage: sh contrib/check-manpage.sh CERTGATE MANPAGE
set -u

[ $# = 2 ] || {
    echo "usage: sh contrib/check-manpage.sh CERTGATE MANPAGE" >&2
    exit 2
}
bin=$1
man=$2
[ -x "$bin" ] || { echo "check-manpage: $bin is not an executable" >&2; exit 2; }
[ -r "$man" ] || { echo "check-manpage: cannot read $man" >&2; exit 2; }

t=$(mktemp -d "${TMPDIR:-/tmp}/check-manpage.XXXXXX") || exit 2
trap 'rm -rf "$t"' EXIT

# The man page as plain words: roff escapes and font changes removed.
sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\(em/ /g' -e 's/\\//g' "$man" >"$t/man.txt"

# The commands: the lower-case words after "certgate" in the --help list
# ("certgate ca add FILE.pem ..." gives "ca add").
"$bin" --help >"$t/help" 2>&1 || { echo "check-manpage: $bin --help failed" >&2; exit 2; }
sed -n 's/^  certgate \(.*\)/\1/p' "$t/help" | awk '{
    cmd = ""
    for (i = 1; i <= NF && i <= 2 && $i ~ /^[a-z]+$/; i++)
        cmd = cmd (cmd == "" ? "" : " ") $i
    if (cmd != "")
        print cmd
}' | sort -u >"$t/commands"
[ -s "$t/commands" ] || { echo "check-manpage: no command found in $bin --help" >&2; exit 2; }

# The flags of the top level and of every command's own --help.
cp "$t/help" "$t/all-help"
while read -r cmd; do
    # shellcheck disable=SC2086 # the command's words are separate arguments
    if ! "$bin" $cmd --help >>"$t/all-help" 2>&1; then
        echo "check-manpage: $bin $cmd --help failed" >&2
        exit 2
    fi
done <"$t/commands"
grep -o -- '--[a-z][a-z0-9-]*' "$t/all-help" | sort -u >"$t/flags"

# --version is not in the help text; the binary must answer it.
if "$bin" --version 2>/dev/null | grep -q '^certgate [0-9]'; then
    echo "--version" >>"$t/flags"
else
    echo "check-manpage: $bin --version does not print its version" >&2
    exit 1
fi

missing=0
while read -r flag; do
    if ! grep -qE -- "(^|[^a-z0-9-])$flag([^a-z0-9-]|\$)" "$t/man.txt"; then
        echo "check-manpage: flag $flag is not in $man"
        missing=$((missing + 1))
    fi
done <"$t/flags"
while read -r cmd; do
    if ! grep -qE "(^|[^a-z])$cmd([^a-z]|\$)" "$t/man.txt"; then
        echo "check-manpage: command '$cmd' is not in $man"
        missing=$((missing + 1))
    fi
done <"$t/commands"
grep -qF "certgate --version" "$t/man.txt" || {
    echo "check-manpage: 'certgate --version' is not in $man"
    missing=$((missing + 1))
}
# The endpoints the server answers (http.c's route table and the metrics
# listener); scripted resources and the Table API are patterns.
for ep in /healthz /api/certgate/v1/whoami /api/certgate/v1/admin/trust /metrics \
    /api/now/table/TABLE; do
    if ! grep -qF -- "$ep" "$t/man.txt"; then
        echo "check-manpage: endpoint $ep is not in $man"
        missing=$((missing + 1))
    fi
done

nflags=$(wc -l <"$t/flags")
ncmds=$(wc -l <"$t/commands")
if [ "$missing" -gt 0 ]; then
    echo "check-manpage: $missing of $nflags flags, $ncmds commands and 5 endpoints missing from $man"
    exit 1
fi
echo "check-manpage: $man documents all $nflags flags, $ncmds commands and 5 endpoints"

#!/bin/sh
# Turns the raw lines of bench/compare.sh (RAW) into a Markdown table
# (BASE.md) and, with gnuplot, a plot of requests/s against connections for
# both servers (BASE.svg). compare.sh calls it; run it again by hand to
# redo a report from a kept .raw file.
#   usage: sh bench/compare-report.sh RAW [BASE]   (default BASE: RAW without .raw)
set -eu

raw=${1:?usage: compare-report.sh RAW [BASE]}
base=${2:-${raw%.raw}}
dat=$base.dat

awk -v dat="$dat" '
function sortn(a, n,    i, j, x) {
    for (i = 2; i <= n; i++) {
        x = a[i]
        for (j = i - 1; j >= 1 && a[j] > x; j--)
            a[j + 1] = a[j]
        a[j + 1] = x
    }
}
# median / min / max of the values stored under key k (list L[k, 1..N[k]])
function stat(k, what,    a, n, i) {
    n = N[k]
    if (n == 0)
        return ""
    for (i = 1; i <= n; i++)
        a[i] = L[k, i] + 0
    sortn(a, n)
    if (what == "min") return a[1]
    if (what == "max") return a[n]
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function add(k, v) {
    if (v == "")
        return
    N[k]++
    L[k, N[k]] = v
}
# 12345 -> "12,345"
function th(x,    s, r) {
    s = sprintf("%.0f", x)
    r = ""
    while (length(s) > 3) {
        r = "," substr(s, length(s) - 2) r
        s = substr(s, 1, length(s) - 3)
    }
    return s r
}
function range(k, fmt) {
    if (N[k] < 2)
        return ""
    return sprintf(" (" fmt "–" fmt ")", stat(k, "min"), stat(k, "max"))
}
function rangeth(k) {
    if (N[k] < 2)
        return ""
    return " (" th(stat(k, "min")) "–" th(stat(k, "max")) ")"
}
# "950 /s (906–979); 1,411 µs CPU/req"
function cell(tag, srv,    k) {
    k = tag SUBSEP srv
    if (N[k SUBSEP "rps"] == 0)
        return "not run"
    return th(stat(k SUBSEP "rps")) " /s" rangeth(k SUBSEP "rps") "; " \
        th(stat(k SUBSEP "cpu")) " µs CPU/req" rangeth(k SUBSEP "cpu")
}
function ratio(tag,    k) {
    k = tag SUBSEP "ratio"
    if (N[k] == 0)
        return "—"
    return sprintf("%.2f×", stat(k)) range(k, "%.2f")
}
function lgcpu(tag) {
    return th(stat(tag SUBSEP "certgate" SUBSEP "client")) "% / " \
        th(stat(tag SUBSEP "nginx" SUBSEP "client")) "%"
}
# "0.81 → 3.10 ms (3.8×)"
function lat(tagn, tagi, srv,    a, b, k) {
    a = stat(tagn SUBSEP srv SUBSEP "p50")
    b = stat(tagi SUBSEP srv SUBSEP "p50")
    if (a == "" || b == "")
        return "not run"
    k = tagi SUBSEP srv SUBSEP "p50ratio"
    return sprintf("%.2f → %.2f ms (%.2f×", a / 1000, b / 1000, stat(k)) \
        (N[k] > 1 ? sprintf(", %.2f–%.2f", stat(k, "min"), stat(k, "max")) : "") ")"
}
/^#=/ { next }
/^#/ { meta[++nmeta] = substr($0, 3); next }
/^fig=/ {
    delete v
    for (i = 1; i <= NF; i++) {
        eq = index($i, "=")
        if (eq)
            v[substr($i, 1, eq - 1)] = substr($i, eq + 1)
    }
    tag = $1
    sub(/^fig=/, "", tag)
    srv = v["srv"]
    rep = v["rep"]
    k = tag SUBSEP srv
    if (tag == "d") {
        add(k SUBSEP "rss", v["rss_kb"] / 1024)
        add(k SUBSEP "pss", v["pss_kb"] / 1024)
        add(k SUBSEP "rss0", v["rss_kb_before"] / 1024)
        add(k SUBSEP "up", v["idle_up"])
        R[tag, srv, rep] = v["rss_kb"]
    } else {
        add(k SUBSEP "rps", v["rps"])
        add(k SUBSEP "cpu", v["server_cpu_us_per_req"])
        add(k SUBSEP "p50", v["p50_us"])
        add(k SUBSEP "p99", v["p99_us"])
        add(k SUBSEP "client", v["client_cpu_pct"])
        R[tag, srv, rep] = v["rps"]
        P[tag, srv, rep] = v["p50_us"]
        errors += v["errors"]
        if (v["errors"] > 0)
            errs[tag " " srv " rep " rep] = v["errors"]
        if ($0 ~ /ROWS_MISMATCH/)
            mismatch++
        if (tag == "r")
            tickets[srv] += v["tickets"]
        if (tag == "r")
            resumed[srv] += v["resumed"]
    }
    tags[tag] = 1
    reps[rep] = 1
}
END {
    # ratios per repetition, then their median
    for (tag in tags)
        for (rep in reps) {
            if ((tag, "certgate", rep) in R && (tag, "nginx", rep) in R && R[tag, "nginx", rep] > 0)
                add(tag SUBSEP "ratio", R[tag, "certgate", rep] / R[tag, "nginx", rep])
            for (s = 0; s < 2; s++) {
                srv = s ? "nginx" : "certgate"
                if (tag ~ /-idle$/) {
                    n = tag
                    sub(/-idle$/, "-none", n)
                    if ((n, srv, rep) in P && (tag, srv, rep) in P && P[n, srv, rep] > 0)
                        add(tag SUBSEP srv SUBSEP "p50ratio", P[tag, srv, rep] / P[n, srv, rep])
                }
            }
        }

    for (i = 1; i <= nmeta; i++)
        print meta[i] "  "
    print ""
    print "Medians of the repetitions, (min–max) over them; ratios are taken per repetition " \
        "(the servers run one after the other, alternating which goes first), then their median. " \
        "CPU/req: the server'\''s user + system CPU time over the measured window divided by the " \
        "requests answered in it (nginx: master + workers). loadgen CPU: the load generator'\''s " \
        "share of one core during the window (certgate run / nginx run)."
    print ""
    print "| figure | certgate | nginx (static 201) | certgate/nginx | loadgen CPU | goal |"
    print "|---|---|---|---|---|---|"
    if ("a" in tags)
        print "| (a) new TLS connection + 1 POST, 8 clients | " cell("a", "certgate") " | " \
            cell("a", "nginx") " | " ratio("a") " | " lgcpu("a") " | ≥ 1.5× |"
    if ("r" in tags)
        print "| (r) resumed TLS session + 1 POST, 8 clients | " cell("r", "certgate") \
            (resumed["certgate"] ? "" : " (no session tickets offered: full handshakes)") " | " \
            cell("r", "nginx") (resumed["nginx"] ? "" : " (no tickets)") " | " ratio("r") \
            " | " lgcpu("r") " | ≥ 1.5× |"
    if ("b" in tags)
        print "| (b) keep-alive POST, 16 connections | " cell("b", "certgate") " | " \
            cell("b", "nginx") " | " ratio("b") " | " lgcpu("b") " | ≥ 0.5× |"
    idle = th(idle)
    if ("c-ka-idle" in tags)
        print "| (c) push latency p50, keep-alive POST on 1 connection: none → " idle " idle TLS connections | " \
            lat("c-ka-none", "c-ka-idle", "certgate") " | " lat("c-ka-none", "c-ka-idle", "nginx") \
            " | — | " lgcpu("c-ka-idle") " | ≤ 1.5× |"
    if ("c-new-idle" in tags)
        print "| (c) push latency p50, new connection + POST, 1 client: none → " idle " idle | " \
            lat("c-new-none", "c-new-idle", "certgate") " | " lat("c-new-none", "c-new-idle", "nginx") \
            " | — | " lgcpu("c-new-idle") " | ≤ 1.5× |"
    if ("d" in tags) {
        for (s = 0; s < 2; s++) {
            srv = s ? "nginx" : "certgate"
            k = "d" SUBSEP srv
            rc[srv] = sprintf("%.0f MiB", stat(k SUBSEP "rss")) range(k SUBSEP "rss", "%.0f") \
                sprintf("; %.0f MiB before; PSS %.0f MiB; %s connections up", stat(k SUBSEP "rss0"),
                        stat(k SUBSEP "pss"), th(stat(k SUBSEP "up")))
        }
        print "| (d) RSS with " idle " idle TLS connections | " rc["certgate"] " | " rc["nginx"] \
            " | " ratio("d") " | — | ≤ 128 MiB |"
    }
    print ""
    ne = 0
    for (b = 1; b <= 3; b++)
        for (c = 1; c <= 4; c++) {
            body = b == 1 ? 200 : b == 2 ? 4096 : 65536
            conns = c == 1 ? 1 : c == 2 ? 16 : c == 3 ? 64 : 256
            tag = "e,c" conns ",b" body
            if (!(tag in tags))
                continue
            if (ne > 0 && body != lastbody)
                printf "\n\n" >dat
            lastbody = body
            if (ne++ == 0) {
                print "Keep-alive POST by connections and body size (e):"
                print ""
                print "| connections | body | certgate req/s | certgate µs CPU/req | nginx req/s | nginx µs CPU/req | certgate/nginx | loadgen CPU |"
                print "|---|---|---|---|---|---|---|---|"
            }
            print "| " conns " | " (body == 200 ? "200 B" : body == 4096 ? "4 KiB" : "64 KiB") " | " \
                th(stat(tag SUBSEP "certgate" SUBSEP "rps")) rangeth(tag SUBSEP "certgate" SUBSEP "rps") " | " \
                th(stat(tag SUBSEP "certgate" SUBSEP "cpu")) " | " \
                th(stat(tag SUBSEP "nginx" SUBSEP "rps")) rangeth(tag SUBSEP "nginx" SUBSEP "rps") " | " \
                th(stat(tag SUBSEP "nginx" SUBSEP "cpu")) " | " ratio(tag) " | " lgcpu(tag) " |"
            printf "%d %d %s %s %s %s\n", conns, body, stat(tag SUBSEP "certgate" SUBSEP "rps"),
                stat(tag SUBSEP "nginx" SUBSEP "rps"), stat(tag SUBSEP "certgate" SUBSEP "cpu"),
                stat(tag SUBSEP "nginx" SUBSEP "cpu") >dat
        }
    if (ne)
        print ""
    printf "Errors (non-201 answers, failed connections): %d", errors
    for (e in errs)
        printf "; %s: %d", e, errs[e]
    print "."
    if (mismatch)
        print "**Committed rows and 201 answers differed in " mismatch " runs.**"
    else
        print "Every 201 from certgate was a committed row (checked after each run)."
}' idle="$(sed -n 's/^#=idle=//p' "$raw" | head -n 1)" "$raw" >"$base.md"

if [ -s "$dat" ] && command -v gnuplot >/dev/null 2>&1; then
    gnuplot <<PLOT
set terminal svg size 800,500 dynamic font "sans,12"
set output "$base.svg"
set title "Keep-alive POST over mTLS: requests/s against connections (medians)"
set xlabel "connections"
set ylabel "requests/s"
set logscale xy
set xrange [0.8:320]
set xtics ("1" 1, "16" 16, "64" 64, "256" 256)
set key outside right
set grid
# one data block per body size (200 B, 4 KiB, 64 KiB), in that order
names = "200-B 4-KiB 64-KiB"
plot for [i=0:2] "$dat" index i using 1:3 with linespoints lw 2 pt 7 ps 0.6 lc i+1 \
        title "certgate, ".word(names, i+1), \
     for [i=0:2] "$dat" index i using 1:4 with linespoints dt 2 lw 2 pt 5 ps 0.6 lc i+1 \
        title "nginx static, ".word(names, i+1)
PLOT
    printf '\n![requests/s against connections](%s)\n' "$(basename "$base").svg" >>"$base.md"
fi
rm -f "$dat"

#!/usr/bin/env bash
# Portcullis's policy decisions against OPA's, in one run.
#
# Runs internal/policy's BenchmarkEvaluate (Portcullis's compiled policy)
# and this module's BenchmarkEvaluate (OPA as Pomerium calls it) and
# BenchmarkEvaluateLean (OPA at its cheapest) and BenchmarkEvaluateFloor
# (one hand-written line of Rego, for scale), one round of each after the
# other, ROUNDS times (default 6), so that a change in the machine's load
# falls on both sides alike. Both test binaries are built first, so no
# build runs between benchmarks. The raw output goes to OUT (default
# bench/policy/results.txt); the table of medians and ratios to stdout.
#
#	bench/policy/run.sh            # from anywhere in the repository
#	ROUNDS=1 bench/policy/run.sh   # a quick look
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
rounds="${ROUNDS:-6}"
out="${OUT:-$root/bench/policy/results.txt}"
tmp="$(mktemp -d)"
sampler=""
cleanup() {
	if [ -n "$sampler" ]; then kill "$sampler" 2>/dev/null || true; fi
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "building the test binaries" >&2
(cd "$root" && go test -c -o "$tmp/portcullis.test" ./internal/policy)
(cd "$root/bench/policy" && go test -c -o "$tmp/opa.test" .)

# The 1-minute load average, every 10 s, while the benchmarks run.
(while :; do cut -d' ' -f1 /proc/loadavg; sleep 10; done) >"$tmp/load" &
sampler=$!

commit="$(git -C "$root" rev-parse --short HEAD)"
if [ -n "$(git -C "$root" status --porcelain)" ]; then
	commit="$commit (with uncommitted changes)"
fi
{
	echo "# bench/policy/run.sh, $rounds rounds, started $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "# nproc $(nproc); $(go version); commit $commit"
	for i in $(seq "$rounds"); do
		echo "round $i/$rounds" >&2
		(cd "$root/internal/policy" &&
			"$tmp/portcullis.test" -test.run '^$' -test.bench '^BenchmarkEvaluate$' -test.benchmem -test.count 1)
		(cd "$root/bench/policy" &&
			"$tmp/opa.test" -test.run '^$' -test.bench '^BenchmarkEvaluate(Lean|Floor)?$' -test.benchmem -test.count 1)
	done
	echo "# finished $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	sort -n "$tmp/load" | awk '{ v[NR] = $1 } END {
		printf "# 1-minute load average, %d samples every 10 s: min %s, median %s, max %s\n", NR, v[1], v[int((NR + 1) / 2)], v[NR] }'
} >"$out"

# The table: medians over the rounds; ± is the largest distance of a
# round from the median, in percent; × is OPA's ns/op over Portcullis's.
awk '
function median(list,    n, a, i, j, t) {
	n = split(list, a, " ")
	for (i = 2; i <= n; i++) {
		t = a[i] + 0
		for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]
		a[j + 1] = t
	}
	return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
}
function spread(list, m,    n, a, i, d, worst) {
	n = split(list, a, " ")
	worst = 0
	for (i = 1; i <= n; i++) {
		d = a[i] - m
		if (d < 0) d = -d
		if (d > worst) worst = d
	}
	return m > 0 ? 100 * worst / m : 0
}
function cell(k,    m) {
	if (!(k in ns)) return "—"
	m = median(ns[k])
	return sprintf("%s ns ±%.0f%%, %d B, %d allocs", fmt(m), spread(ns[k], m), median(bytes[k]), median(allocs[k]))
}
function fmt(x) {
	return x >= 100 ? sprintf("%.0f", x) : sprintf("%.1f", x)
}
function ratio(a, b) {
	if (!(a in ns) || !(b in ns)) return "—"
	return sprintf("%.0f×", median(ns[a]) / median(ns[b]))
}
/^pkg:/ { side = ($2 ~ /internal\/policy$/) ? "portcullis" : "opa" }
/^Benchmark/ {
	name = $1
	sub(/-[0-9]+$/, "", name)
	split(name, parts, "/")
	fn = parts[1]
	sub(/^[^\/]*\//, "", name)
	key = (side == "portcullis") ? "portcullis" : (fn == "BenchmarkEvaluateLean" ? "lean" : (fn == "BenchmarkEvaluateFloor" ? "floor" : "opa"))
	k = key SUBSEP name
	ns[k] = ns[k] " " $3
	bytes[k] = bytes[k] " " $5
	allocs[k] = allocs[k] " " $7
	if (key != "floor" && !(name in seen)) { seen[name] = 1; order[++count] = name }
}
END {
	print "| Policy / request | Portcullis | OPA, as Pomerium calls it | × | OPA, lean | × |"
	print "|---|---|---|---:|---|---:|"
	for (i = 1; i <= count; i++) {
		n = order[i]
		printf "| %s | %s | %s | %s | %s | %s |\n", n,
			cell("portcullis" SUBSEP n), cell("opa" SUBSEP n), ratio("opa" SUBSEP n, "portcullis" SUBSEP n),
			cell("lean" SUBSEP n), ratio("lean" SUBSEP n, "portcullis" SUBSEP n)
	}
	n = "rules=1/dev-exec-allowed"
	printf "\nOPA floor (allow if \"dev\" in input.groups, parsed input): %s; %s Portcullis 1-rule, %s Portcullis 10-rule\n",
		cell("floor" SUBSEP n), ratio("floor" SUBSEP n, "portcullis" SUBSEP n), ratio("floor" SUBSEP n, "portcullis" SUBSEP "rules=10/dev-exec-allowed")
}' "$out"
echo
grep '^#' "$out"
echo "raw output: $out" >&2

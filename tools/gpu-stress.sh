#!/bin/bash
# gpu-stress.sh RUNS [PARALLEL]: runs the GPU-using test binaries (webgpu, backend, server) RUNS times each,
# PARALLEL at a time (default: twice the cores), under GC pressure (GOGC cycles through 1, 5, 25, 100) and
# the CPU load of the parallel runs themselves, and counts the runs that failed and those that aborted (a
# signal, or wgpu-native's "panicked at"). Logs of the runs that did not pass are kept in $STRESS_DIR
# (default /tmp/gpu-stress). `make stress-gpu RUNS=50` runs it; it is not part of `make test`.
set -eu
runs=${1:?usage: gpu-stress.sh RUNS [PARALLEL]}
par=${2:-$(($(nproc) * 2))}
dir=$(realpath -m "${STRESS_DIR:-/tmp/gpu-stress}")
export VK_ICD_FILENAMES="${VK_ICD_FILENAMES:-/usr/share/vulkan/icd.d/lvp_icd.$(uname -m).json}" REQUIRE_GPU=1
rm -rf "$dir" && mkdir -p "$dir/bin" "$dir/logs"

for pkg in webgpu backend server; do
	go test -c -o "$dir/bin/$pkg.test" "./$pkg"
	[ -x "$dir/bin/$pkg.test" ] || { echo "gpu-stress: ./$pkg has no tests" >&2; exit 1; }
done

# One run: binary, run number. Prints "pass NAME", or "fail LOG" or "abort LOG", keeping the log of anything
# but a pass.
one() {
	bin=$1 n=$2
	name=$(basename "$bin" .test)
	set -- 1 5 25 100
	shift $((n % 4))
	log="$dir/logs/$name-$n.log"
	# The test binaries run in their package's source directory, as `go test` runs them.
	# Of the server's tests only those on the GPU; every test of webgpu and backend uses it.
	filter=.
	[ "$name" = server ] && filter=GPU
	if (cd "./$name" && GOGC=$1 "$bin" -test.count=1 -test.run="$filter" >"$log" 2>&1); then
		echo "pass $name"
		rm -f "$log"
	elif grep -qE 'panicked at|fatal runtime error|SIGABRT|SIGSEGV|signal arrived during cgo' "$log"; then
		echo "abort $log"
	else
		echo "fail $log"
	fi
}

i=0
: >"$dir/results"
while [ "$i" -lt "$runs" ]; do
	for bin in "$dir"/bin/*.test; do
		one "$bin" "$i" >>"$dir/results" &
		while [ "$(jobs -p | wc -l)" -ge "$par" ]; do sleep 0.2; done
	done
	i=$((i + 1))
done
wait

total=$(wc -l <"$dir/results")
pass=$(grep -c '^pass' "$dir/results" || true)
fail=$(grep -c '^fail' "$dir/results" || true)
abort=$(grep -c '^abort' "$dir/results" || true)
grep -v '^pass' "$dir/results" || true
for name in webgpu backend server; do
	echo "$name: $(grep -c "^pass $name\$" "$dir/results" || true) of $runs passed"
done
echo "gpu-stress: $total runs ($runs of each of webgpu, backend, server; $par in parallel): $pass passed, $fail failed, $abort aborted"
[ "$fail" = 0 ] && [ "$abort" = 0 ]

#!/usr/bin/env bash
# Mutation testing with mutmut: how many one-line bugs do the tests catch?
#
#   benchmarks/mutation.sh                      # core, runtime and training (hours; not run in CI)
#   benchmarks/mutation.sh training             # one package
#   benchmarks/mutation.sh escmvq/core/pvq.py   # one module, with its package's tests
#
# Packages and the tests run against their mutants:
#   core      escmvq/core/*                                   tests/test_core_*.py
#   runtime   escmvq/runtime/*                                tests/test_runtime_*.py tests/test_cli_txrx.py
#   training  escmvq/training/losses.py, escmvq/training/model.py
#                                     tests/test_train_{losses,model,quantizer,options}.py tests/test_training_baselines.py
#                                     tests/test_decoder_{cond,input}.py
#
# Each target runs in a scratch copy of the working tree (tracked and untracked files, not
# the ignored ones), with a setup.cfg [mutmut] section written there (pyproject.toml is
# left alone). The tiny test bundle is exported once per target (ESCMVQ_TEST_BUNDLE_CACHE),
# not once per mutant. Prints per target: killed / total and the score, and writes
# benchmarks/results/mutation/<target>.json (mutmut's counts) and <target>.survivors.txt
# (`mutmut results`: every mutant not killed; `mutmut show NAME` in the scratch copy, kept
# with MUTATION_KEEP=1, prints its diff).
#
# Needs: pip install -e '.[test,train]' (mutmut >= 3.8). Environment:
#   MUTMUT_MAX_CHILDREN  parallel mutant runs (default: number of CPUs)
#   MUTATION_KEEP=1      keep the scratch copies (printed); default: removed
#   MUTATION_TESTS       test files to run instead of the package's (a quicker, partial measure)
#   PYTHON               interpreter (default: python)
# The score is killed / (total - skipped); mutants with no covering test count as survivors.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python}
JOBS=${MUTMUT_MAX_CHILDREN:-$(nproc 2>/dev/null || echo 2)}
OUT="$ROOT/benchmarks/results/mutation"

"$PY" -c "import mutmut" 2>/dev/null || { echo "mutmut is not installed: pip install -e '.[test]'" >&2; exit 2; }

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(core runtime training)

package_of() {  # target -> package name
    case "$1" in
        core|escmvq/core/*) echo core ;;
        runtime|escmvq/runtime/*) echo runtime ;;
        training|escmvq/training/losses.py|escmvq/training/model.py) echo training ;;
        *) echo "mutation.sh: unknown target $1 (core, runtime, training or a module of them)" >&2; exit 2 ;;
    esac
}

mutate_patterns() {  # target -> globs for only_mutate
    case "$1" in
        core) echo "escmvq/core/*" ;;
        runtime) echo "escmvq/runtime/*" ;;
        training) printf '%s\n' escmvq/training/losses.py escmvq/training/model.py ;;
        *) echo "$1" ;;
    esac
}

tests_of() {  # package -> test files (globs expanded in the scratch copy)
    case "$1" in
        core) echo "tests/test_core_*.py" ;;
        runtime) echo "tests/test_runtime_*.py tests/test_cli_txrx.py" ;;
        training) echo "tests/test_train_losses.py tests/test_train_model.py tests/test_train_quantizer.py tests/test_training_baselines.py tests/test_train_options.py tests/test_decoder_cond.py tests/test_decoder_input.py" ;;
    esac
}

# tests left out of every mutant run: minutes each (they train and export whole baselines),
# and covered by the faster tests of the same code; and tests of the shipped model zoo, which
# mutmut's copy of the tree (mutants/) does not hold
SLOW_TESTS=(
    "tests/test_training_baselines.py::test_train_baselines_command_trains_exports_skips_and_reports"
    "tests/test_decoder_cond.py::test_the_default_bundle_is_reliability_aware_and_links"
)

mkdir -p "$OUT"
for target in "${targets[@]}"; do
    pkg=$(package_of "$target")
    name=$(echo "$target" | tr '/' '_' | sed 's/\.py$//')
    work=$(mktemp -d "${TMPDIR:-/tmp}/escmvq-mutation-$name.XXXXXX")
    [ "${MUTATION_KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
    # scratch copy of the working tree (tracked + untracked, not ignored)
    (cd "$ROOT" && git ls-files -z -co --exclude-standard | tar --null -T - -cf -) | tar -xf - -C "$work"
    # the test data sit next to the checkout (escmvq/export/testing.py: <repo>/../shared); mutmut
    # runs the tests from <work>/mutants, so <work>/shared must point there
    [ -d "$ROOT/../shared" ] && ln -s "$(cd "$ROOT/../shared" && pwd)" "$work/shared"
    # the tiny bundle below is exported from <work> itself, whose ../shared is not the checkout's
    if [ -z "${ESCMVQ_DATA:-}" ] && [ -d "$ROOT/../shared/data" ]; then
        export ESCMVQ_DATA="$(cd "$ROOT/../shared/data" && pwd)"
    fi
    (
        cd "$work"
        tests=$(ls ${MUTATION_TESTS:-$(tests_of "$pkg")} | tr '\n' ' ')
        {
            echo "[mutmut]"
            echo "source_paths = escmvq"
            echo "only_mutate ="
            mutate_patterns "$target" | sed 's/^/    /'
            echo "pytest_add_cli_args_test_selection ="
            for t in $tests; do echo "    $t"; done
            echo "pytest_add_cli_args ="
            echo "    -p"
            echo "    no:cacheprovider"
            for t in "${SLOW_TESTS[@]}"; do echo "    --deselect"; echo "    $t"; done
        } > setup.cfg
        export ESCMVQ_TEST_BUNDLE_CACHE="$work/bundle-cache" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
        if [ "$pkg" = runtime ]; then  # export the tiny bundle once, from the unmutated code
            PYTHONPATH="$work" "$PY" -c "from pathlib import Path; from escmvq.export.testing import tiny_bundle; tiny_bundle(Path('$work/bundle-cache'))"
        fi
        echo "== $target: mutmut run in $work (tests: $tests)" >&2
        start=$(date +%s)
        "$PY" -m mutmut run --max-children "$JOBS" >"$work/mutmut-run.log" 2>&1 || {
            echo "mutmut run failed for $target; last lines of $work/mutmut-run.log:" >&2
            tail -30 "$work/mutmut-run.log" >&2
            exit 1
        }
        "$PY" -m mutmut export-cicd-stats >/dev/null
        "$PY" -m mutmut results >"$OUT/$name.survivors.txt" || true
        "$PY" - "$OUT/$name.json" "$target" "$(( $(date +%s) - start ))" <<'EOF'
import json, sys
out, target, secs = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = json.load(open("mutants/mutmut-cicd-stats.json"))
tested = s["total"] - s["skipped"]
s.update(target=target, seconds=secs, score=(s["killed"] + s["timeout"]) / tested if tested else None)
json.dump(s, open(out, "w"), indent=1)
print(f"{target}: killed {s['killed'] + s['timeout']} of {tested} mutants "
      f"({100 * s['score']:.1f}%): survived {s['survived']}, no tests {s['no_tests']}, "
      f"suspicious {s['suspicious']}, segfault {s['segfault']}; {secs} s" if tested else f"{target}: no mutants")
EOF
    ) | tee -a "$OUT/summary.txt"
    if [ "${MUTATION_KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; trap - EXIT; fi
done
echo "results in $OUT" >&2

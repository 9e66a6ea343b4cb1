#!/usr/bin/env bash
# The reference GPU run: execute every chapter on a CUDA machine and keep, in one folder named for the
# GPU and software versions (PARENT/<gpu>_cuda<version>_torch<version>/), the executed notebooks, the
# ledger they wrote, the versions and the log. The book and the README read that folder from results/gpu/.
# The machine needs torch; packages it lacks can come as wheels in .whl/ (README, instructor notes).
#
#     tools/gpu_run.sh PARENT [notebooks...]      # e.g. tools/gpu_run.sh results/gpu
set -euo pipefail
parent=${1:?usage: tools/gpu_run.sh PARENT [notebooks...]}
shift
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/course-site .whl/*.whl
  export PYTHONPATH=/tmp/course-site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python3 -m ipykernel install --user --name dl-perf-course --display-name "Python 3 (DL performance course)" >/dev/null
versions=$(python3 - <<'PY'
import json, platform, subprocess, torch
driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                        capture_output=True, text=True).stdout.strip()
print(json.dumps({"gpu": torch.cuda.get_device_name(0), "driver": driver, "cuda": torch.version.cuda,
                  "torch": torch.__version__, "python": platform.python_version()}))
PY
)
name=$(python3 -c 'import json, sys; from tools.course import reference_run_name; print(reference_run_name(json.loads(sys.argv[1])))' "$versions")
mkdir -p "$parent/$name"
out="$(cd "$parent/$name" && pwd)"  # absolute: the kernels run in notebooks/, and write the ledger from there
echo "$versions" >"$out/versions.json"
echo "reference run into $out: $versions"
COURSE_LEDGER="$out/ledger.json" python3 tools/run_notebooks.py --keep-going --out "$out" "$@" 2>&1 | tee -a "$out/run.log"

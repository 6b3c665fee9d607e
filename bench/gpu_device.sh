#!/bin/bash
# Issue 24's GPU check in one call of a lent GPU machine (the device tool), about 8 minutes of it.
#
# Prepare here (both folders are listed in .git/info/exclude and travel with `carry: [".whl", ".gpu"]`):
#   .whl/  the packages the machine lacks, for Python 3.12 (device README: pip download --no-deps ...):
#          ultralytics==8.4.190 ultralytics-thop ultralytics-platform pycocotools faster-coco-eval ensemble-boxes
#          msgspec optuna sqlalchemy alembic colorlog mako
#   .gpu/data/train.json and .gpu/data/train/*.jpg: bench_budget.py's 600-photo TrashNet subset (40 MB)
#   .gpu/yolov5n.pt: ../shared/weights/yolov5n.pt
# polars' runtime (52 MB) does not fit the transfer beside the photos; Ultralytics' trainer imports it only to copy
# results.csv into the checkpoint, inside a try, so a one-function stand-in is written on the machine below.
# Then: run(command="bash bench/gpu_device.sh", carry=[".whl", ".gpu"], timeout_s=540), and score the weights that
# come back on the 400 held-out photos here: infer.py --weights gpu_planned.pt --images bench/out/budget/data/test.json.
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 9
mkdir -p /tmp/shim/polars
printf 'def read_csv(*a, **k):\n    raise RuntimeError("polars is not installed here")\n' > /tmp/shim/polars/__init__.py
export PYTHONPATH=/tmp/site:/tmp/shim
nvidia-smi -L; nproc
python3 -c "import torch,torchvision,ultralytics,cv2,numpy;print(torch.__version__,torchvision.__version__,torch.cuda.is_available(),ultralytics.__version__,cv2.__version__,numpy.__version__)"
timeout "${BENCH_TIMEOUT:-460}" python3 bench/bench_gpu.py --sizes 1024 --images 256 --epochs 3 --model yolov8s.yaml \
  --plan-budget "${PLAN_BUDGET:-90s}" --plan-data .gpu/data/train.json --plan-baseline --weights .gpu/yolov5n.pt \
  --keep "$OUT" --work /tmp/bg --out "$OUT/gpu.json" --step-timeout 200 2>&1 | grep -v '^  ' > "$OUT/run.log"
echo "bench rc ${PIPESTATUS[0]}"
tail -c 3000 "$OUT/run.log"
cd /tmp/bg && tar czf "$OUT/logs.tgz" $(find . -name '*.log' -o -name results.csv | grep -v '/images/\|/labels/') 2>/dev/null
ls -la "$OUT"

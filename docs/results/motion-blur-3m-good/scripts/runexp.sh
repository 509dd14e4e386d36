# usage: runexp.sh NAME QUALITY overrides...
cd /work/main
N=$1; Q=$2; shift 2
flock /tmp/eaq-heavy.lock sh -c "PYTHONPATH=src .venv/bin/python /tmp/bcsel/exp.py $N $Q $* && .venv/bin/eaq train-offline --data /tmp/bcsel/$N/syn --out /tmp/bcsel/$N/bc --learner bc --steps 4000 --eval-every 4000 --eval-episodes 0 >/tmp/bcsel/$N/bc.log 2>&1"
python3 -c "import json;r=json.load(open('/tmp/bcsel/$N/bc/result.json'))['final'];print('BC on samples', r['normalized_return'])"
.venv/bin/python benchmarks/motion_blur.py /root/.cache/eaq/datasets/3m/seed0-165bdeae69/$Q-1000ep-eps0.05 /tmp/bcsel/$N/syn --bc out/diag-$Q/bc-real-s0

"""Print the overrides of the best finished job in a sweep's summary.csv (highest objective, the third column;
ties, common with a small val split, go to the lower val/loss), without its seed, so that a run.sh can retrain
it over several seeds:
    best=$(python experiments/best_overrides.py multirun/<sweep>/summary.csv)"""
import csv
import sys

with open(sys.argv[1], newline="") as f:
    reader = csv.DictReader(f)
    objective = reader.fieldnames[2]
    rows = [r for r in reader if r["status"] == "COMPLETE"]
best = max(rows, key=lambda r: (float(r[objective]), -float(r.get("val/loss") or "inf")))
print(" ".join(o for o in best["overrides"].split() if not o.startswith("seed=")))

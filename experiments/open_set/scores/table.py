import os, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import D
import json
rows = {}
for l in open(D + 'results.jsonl'):
    r = json.loads(l); rows[r['name']] = r
print('| dataset | score | mean AUROC | abstained@95 | per-t AUROC (t=0..3) | s / 10k queries | state (MB) |')
print('|---|---|---|---|---|---|---|')
for n, r in sorted(rows.items(), key=lambda kv: (kv[0].split()[0], -kv[1]['mean_auroc'])):
    ds, name = n.split(' ', 1)
    print(f"| {ds} | {name} | {r['mean_auroc']:.4f} | {r['mean_abstained']:.3f} | {' / '.join(f'{v:.3f}' for v in r['per_t'])} | "
          f"{r['score_s_per_10k']:.2f} | {r['state_bytes']/1e6:.1f} |")

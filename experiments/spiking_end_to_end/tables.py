"""Tables of experiments/spiking_end_to_end from the sweep's results.json files.

    python experiments/spiking_end_to_end/tables.py outputs/multirun/spiking_end_to_end

A_last is the run's own (mean of the last row of R); `snn` and `store` are the final memory's accuracy on
the whole test set by the network and by the store's own readout (the one it chose on held-out data, which the
network holds as synapses; results.json "conditions"), and `same answer` the share of test queries on which
they agree. The bar is max(SLDA, RanPAC) - 0.005 from experiments/all_streams
and experiments/iu_xray (same features and protocol).
"""

import json
import sys
from pathlib import Path

import numpy as np

BAR = {"digits_eff": (0.9613, "SLDA 0.9663"), "digits_px": (0.9860, "RanPAC 0.9910"),
       "fmnist_px": (0.8692, "RanPAC 0.8742"), "fmnist_eff": (0.8770, "RanPAC 0.8820"),
       "iu_reports": (0.8646, "SLDA 0.8696")}


def runs(root: Path):
    for path in sorted(root.glob("*/*/results.json")):
        r = json.loads(path.read_text())
        yield path.parts[-3], r["config"]["memory"]["weights"], r


def mean_std(values, digits=4):
    values = np.asarray(values, float)
    return f"{values.mean():.{digits}f} ± {values.std():.{digits}f}" if len(values) > 1 else f"{values.mean():.{digits}f}"


def main(root):
    groups = {}
    for stream, weights, r in runs(Path(root)):
        groups.setdefault((stream, weights), []).append(r)
    print("| stream | weights | seeds | readout (per seed) | A_last | snn (test) | store (test) | snn - store | same answer | "
          "bar | best baseline | meets the bar |\n|---|---|---|---|---|---|---|---|---|---|---|---|")
    a_last = {}
    for (stream, weights), rs in sorted(groups.items()):
        A = [r["metrics"]["A_last"] for r in rs]
        a_last[stream, weights] = np.mean(A)
        snn = [r["conditions"]["clean"]["snn"]["accuracy"] for r in rs]
        store = lambda r: r["conditions"]["clean"].get("store") or r["conditions"]["clean"]["store_vote"]
        vote = [store(r)["accuracy"] for r in rs]
        same = [store(r)["same_answer"] for r in rs]
        bar, best = BAR.get(stream, (float("nan"), "n/a"))
        gap = np.subtract(snn, vote)
        ok = np.mean(A) >= bar and abs(gap.mean()) <= 0.003 and min(same) >= 0.99
        chosen = ", ".join(r["memory_stats"]["readout"] for r in rs)
        print(f"| {stream} | {weights} | {len(rs)} | {chosen} | {mean_std(A)} | {mean_std(snn)} | {mean_std(vote)} | "
              f"{gap.mean():+.4f} | {mean_std(same)} (min {min(same):.4f}) | {bar:.4f} | {best} | {'yes' if ok else 'no'} |")
    print("\nint8 against float32 (A_last, mean over seeds):\n\n| stream | float32 | int8 | int8 - float32 |\n|---|---|---|---|")
    for stream in sorted({s for s, _ in a_last}):
        if (stream, "float32") in a_last and (stream, "int8") in a_last:
            f, i = a_last[stream, "float32"], a_last[stream, "int8"]
            print(f"| {stream} | {f:.4f} | {i:.4f} | {i - f:+.4f} |")
    print("\nPer test query of the final memory (mean over seeds; operations as neurocl/snn/memory.py counts them):\n")
    print("| stream | weights | search neurons N | d | host MACs | search MACs | clock adds | neuron-state updates | spike-driven "
          "synaptic ops (readout) | weight reads | search spikes | steps to the answer | spikes per synapse | "
          "SNN nJ | dense store readout nJ | SNN / dense |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (stream, weights), rs in sorted(groups.items()):
        stats = [r["memory_stats"] for r in rs]
        e = lambda key: np.mean([s["energy"][key] for s in stats])
        op = lambda key: np.mean([s["energy"]["operations_per_query"][key] for s in stats])
        N = np.mean([s["concept_neurons"] for s in stats])
        d = op("search_macs") / N
        host = np.mean([s["energy"]["operations_per_query"].get("host_macs", 0) for s in stats])
        print(f"| {stream} | {weights} | {N:,.0f} | {d:.0f} | {host:,.0f} | {op('search_macs'):,.0f} | {op('clock_adds'):,.0f} | "
              f"{op('neuron_updates'):,.0f} | {op('spike_sops'):,.0f} ({op('readout_sops'):,.1f}) | "
              f"{e('weight_reads_per_query'):,.0f} | {np.mean([s['search_spikes_per_query'] for s in stats]):.1f} | "
              f"{np.mean([s['steps_to_answer'] for s in stats]):.1f} | "
              f"{np.mean([s['spikes_per_synapse'] for s in stats]):.4f} | {e('snn_pJ_per_query') / 1e3:,.1f} | "
              f"{e('dense_pJ_per_query') / 1e3:,.1f} | {e('snn_over_dense'):.2f} |")


if __name__ == "__main__":
    main(sys.argv[1])

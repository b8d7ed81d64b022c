"""Does a contrastive head align IU X-ray report pages (pixels) with their report texts, and does it help SLDA?

    cd /work/main && HF_HUB_OFFLINE=1 .venv/bin/python experiments/contrastive/measure.py

a = EfficientNet-Lite0 features of the rendered pages at 224 px, b = MiniLM features of the same reports'
texts (IUXrayPages and IUXrayReports: same reports, split and ids). Prints recall@1/@5 of cross-modal retrieval on
the test pairs before fitting (random-init heads) and after fitting on (i) the first experience's training pairs
(classes 0 and 1) and (ii) all training pairs, with chance; then A_last of streaming LDA (5 experiences of 2
classes, seed 0) on raw page features against projected ones. Writes results.json beside this file.
"""

import logging
import sys
import time
from pathlib import Path

import torch

from neurocl.data.iu_xray import IUXrayPages, IUXrayReports
from neurocl.driver import Features, run_stream
from neurocl.encoders import EfficientNetLite, FeatureCache, MiniLM
from neurocl.encoders.projection import ContrastiveProjection, StreamProjection, retrieval_recall
from neurocl.io import write_json
from neurocl.loggers import ConsoleLogger
from neurocl.memory.slda import StreamingLDA
from neurocl.runtime import seed_everything
from neurocl.scenarios import ClassIncremental

HERE = Path(__file__).resolve().parent
SEED, KS = 0, (1, 5)
FIT = {"epochs": 200, "batch_size": 256, "lr": 1e-3, "weight_decay": 1e-4, "validation_fraction": 0.1, "patience": 10}


def recalls(head: ContrastiveProjection, a: torch.Tensor, b: torch.Tensor) -> dict:
    za, zb = head.project_a(a), head.project_b(b)
    return {"page->report": retrieval_recall(za, zb, KS), "report->page": retrieval_recall(zb, za, KS)}


def length_only(texts: list[str]) -> torch.Tensor:
    """Word count as a unit 2-d vector at an angle that grows with it: cosine then ranks keys by nearest length.
    A control: the retrieval that the length of the printed text alone (a page's layout) would allow."""
    words = torch.tensor([len(t.split()) for t in texts], dtype=torch.float64)
    angle = (words - words.min()) / (words.max() - words.min()) * torch.pi / 2
    return torch.stack([angle.cos(), angle.sin()], dim=1).float()


def slda_a_last(stream, train_x, train_y, test_x, test_y, num_classes) -> float:
    seed_everything(SEED)
    memory = StreamingLDA(train_x.shape[1], num_classes)
    results = run_stream(stream, memory, Features(train_x, train_y), Features(test_x, test_y), num_classes,
                         ConsoleLogger(), seed=SEED)
    return float(results["metrics"]["A_last"])


def main():
    torch.set_num_threads(1)  # a shared machine
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stdout)
    start = time.perf_counter()
    pages, reports = IUXrayPages().load(), IUXrayReports().load()
    for split in ("train", "test"):  # the pairing rests on this
        assert getattr(pages, split).ids == getattr(reports, split).ids, f"{split} ids differ"
        assert torch.equal(getattr(pages, split).labels, getattr(reports, split).labels)
    cache = FeatureCache("~/.cache/neurocl/features")
    page_encoder, text_encoder = EfficientNetLite(resolution=224, batch_size=32), MiniLM()
    a = {s: cache.features(page_encoder, getattr(pages, s), pages.name, s) for s in ("train", "test")}
    b = {s: cache.features(text_encoder, getattr(reports, s), reports.name, s) for s in ("train", "test")}
    y = {s: getattr(pages, s).labels for s in ("train", "test")}
    n_test = len(y["test"])
    print(f"pairs: {len(y['train'])} train, {n_test} test; dims a={a['train'].shape[1]} b={b['train'].shape[1]}; "
          f"cache hits {cache.hits} misses {cache.misses}")

    stream = ClassIncremental(classes_per_experience=2).build(a["train"], y["train"], a["test"], y["test"],
                                                              pages.num_classes)
    first = stream.experiences[0]
    print(f"experience 0: classes {first.classes} ({[pages.class_names[c] for c in first.classes]}), "
          f"{len(first.train_idx)} training pairs")

    out = {"chance": {f"R@{k}": k / n_test for k in KS}, "n_test": n_test, "fit_options": FIT, "retrieval": {},
           "fits": {}}
    heads = {}
    head = ContrastiveProjection(a["train"].shape[1], b["train"].shape[1], 256, 0.07, seed=SEED)
    out["retrieval"]["random init (before fitting)"] = recalls(head, a["test"], b["test"])
    texts = reports.test.data
    out["distinct_test_texts"] = len(set(texts))
    lengths = length_only(texts)
    out["retrieval"]["control: report word count only"] = {"page->report": retrieval_recall(lengths, lengths, KS),
                                                           "report->page": retrieval_recall(lengths, lengths, KS)}
    for name, rows in (("fit on experience 0 (classes 0, 1)", first.train_idx),
                       ("fit on all training pairs", torch.arange(len(y["train"])))):
        head = ContrastiveProjection(a["train"].shape[1], b["train"].shape[1], 256, 0.07, seed=SEED)
        history = head.fit(a["train"][rows], b["train"][rows], **FIT)
        heads[name] = head
        out["fits"][name] = {"pairs": len(rows), "epochs_run": len(history), "best_epoch": head.best_epoch,
                             "best_val_loss": min([h["val_loss"] for h in history]),
                             "first_val_loss": history[0]["val_loss"], "history": history,
                             "recall_on_its_fit_pairs": recalls(head, a["train"][rows], b["train"][rows])}
        out["retrieval"][name] = recalls(head, a["test"], b["test"])

    # SLDA on the page features: raw, a frozen random head (control), and the first_experience policy
    out["slda_A_last"] = {"raw page features (1280-d)": slda_a_last(stream, a["train"], y["train"], a["test"],
                                                                    y["test"], pages.num_classes)}
    for name, policy in (("projected, frozen random init (control, 256-d)", "frozen"),
                         ("projected, first_experience policy (256-d)", "first_experience")):
        projection = StreamProjection(policy, ContrastiveProjection(a["train"].shape[1], b["train"].shape[1], 256,
                                                                    0.07, seed=SEED), FIT)
        # first_experience fits before experience 0 and then never changes, so projecting every feature once,
        # up front, is the same as projecting each experience's features as they arrive
        projection.before_experience(0, a["train"][first.train_idx], b["train"][first.train_idx])
        for t in range(1, len(stream)):
            assert not projection.before_experience(t)
        out["slda_A_last"][name] = slda_a_last(stream, projection.transform(a["train"]), y["train"],
                                               projection.transform(a["test"]), y["test"], pages.num_classes)
    # a reference, not a page result: the same SLDA on the report texts' own features
    out["slda_A_last"]["reference: report text features (MiniLM, 384-d)"] = slda_a_last(
        stream, b["train"], y["train"], b["test"], y["test"], pages.num_classes)
    out["wall_s"] = time.perf_counter() - start

    print(f"\nretrieval on the {n_test} test pairs ({out['distinct_test_texts']} distinct report texts; "
          f"chance: R@1 {1 / n_test:.4f}, R@5 {5 / n_test:.4f})")
    print(f"  {'heads':<38} {'page->report R@1':>17} {'R@5':>7} {'report->page R@1':>17} {'R@5':>7}")
    for name, r in out["retrieval"].items():
        p, t = r["page->report"], r["report->page"]
        print(f"  {name:<38} {p['R@1']:17.4f} {p['R@5']:7.4f} {t['R@1']:17.4f} {t['R@5']:7.4f}")
    print("\nfits (early stopping on 10% of each fit's training pairs)")
    for name, f in out["fits"].items():
        tr = f["recall_on_its_fit_pairs"]["page->report"]
        print(f"  {name:<38} pairs {f['pairs']:5d}  epochs run {f['epochs_run']:3d}  best epoch {f['best_epoch']:3d}"
              f"  val loss {f['first_val_loss']:.4f} (epoch 1) -> {f['best_val_loss']:.4f} (best)"
              f"  page->report R@1 on its fit pairs (train+val) {tr['R@1']:.4f}")
    print("\nstreaming LDA, 5 experiences x 2 classes, seed 0: A_last")
    for name, v in out["slda_A_last"].items():
        print(f"  {name:<52} {v:.4f}")
    print(f"\nwall {out['wall_s']:.0f} s")
    write_json(HERE / "results.json", out)


if __name__ == "__main__":
    main()

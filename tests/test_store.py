import numpy as np
import pytest
import torch

from conftest import compose
from neurocl.errors import ConfigError, DataError
from neurocl.memory import PrototypeMemory
from neurocl.memory.analyzer import PrototypeAnalyzer
from neurocl.memory.backends import ExactBackend, FaissBackend, HnswBackend
from neurocl.memory.conditioning import Conditioner
from neurocl.memory.store import PrototypeStore


def blobs(centres, per=30, spread=0.01, seed=0):
    rng = np.random.default_rng(seed)
    centres = np.asarray(centres, np.float32)
    x = np.repeat(centres, per, axis=0) + spread * rng.standard_normal((len(centres) * per, centres.shape[1]))
    y = np.repeat(np.arange(len(centres)), per)
    order = rng.permutation(len(y))
    return x[order].astype(np.float32), y[order]


def store(**kw):
    # float32 means: the arithmetic is checked to 1e-5 here (float16, the default, keeps about 3 digits)
    options = dict(similarity_threshold=0.9, conditioning="none", backend="exact", maintenance_interval=10**6,
                   precision="float32")
    return PrototypeStore(kw.pop("dim", 8), kw.pop("num_classes", 3), **{**options, **kw})


CENTRES = np.eye(8)[:3] + 0.2


def test_one_prototype_per_tight_cluster_and_exact_mean_while_young():
    s = store()
    x, y = blobs(CENTRES)
    s.observe(x, y)
    assert len(s) == 3 and s.events["founded"] == 3 and s.events["updates"] == len(x) - 3
    ids = s.ids
    assert sorted(s.counts[ids]) == [30, 30, 30] and (s.label_counts[ids].max(axis=1) == 30).all()
    # rate max(momentum, 1/n): while n < 1/momentum the prototype is the exact mean of its samples
    members = x[y == y[0]][:5]
    young = store(momentum=0.01)
    young.observe(members[:1], y[:1])
    young.observe(members[1:], np.full(4, y[0]))
    assert np.allclose(young.means[young.ids[0]], members.mean(axis=0), atol=1e-5)


def test_purity_gate_keeps_labels_apart():
    x, y = blobs(CENTRES[:1], per=40)
    y = np.arange(40) % 2  # two labels on the very same concept
    gated, open_ = store(), store(purity_gate=False)
    gated.observe(x, y)
    open_.observe(x, y)
    assert len(gated) == 2 and len(open_) == 1
    assert (gated.label_counts[gated.ids].max(axis=1) == 20).all()
    assert open_.label_counts[open_.ids[0]].tolist() == [20, 20, 0]  # labels counted, not owned


@pytest.mark.parametrize("backend", ["exact", "hnswlib"])
def test_budget_by_ward_merges_and_by_pruning(backend):
    x, y = blobs(CENTRES, per=40, spread=0.2)
    merged = store(similarity_threshold=0.999, max_prototypes=12, backend=backend)
    merged.observe(x, y)
    assert len(merged) == 12 and merged.events["merges"] == merged.events["founded"] - 12
    assert len(merged.backend) == 12
    purity = merged.label_counts[merged.ids].max(axis=1) / merged.label_counts[merged.ids].sum(axis=1)
    assert (purity == 1).all() and merged.counts[merged.ids].sum() == len(x)  # nothing lost by merging
    pruned = store(similarity_threshold=0.999, max_prototypes=12, over_budget="prune", backend=backend)
    pruned.observe(x, y)
    assert len(pruned) == 12 and pruned.events["prunes"] > 0 and pruned.events["merges"] == 0


def test_class_shares_fill_the_budget_to_a_common_level():
    from neurocl.memory.store import class_shares
    assert class_shares(np.array([10, 2, 7]), 12).tolist() == [5, 2, 5]  # 2 keeps all; 10 and 7 meet at 5
    assert class_shares(np.array([10, 2, 7]), 13).tolist() == [6, 2, 5]  # the remainder: one to the first above
    assert class_shares(np.array([10, 2, 7]), 30).tolist() == [10, 2, 7]  # under the budget: nothing to cut
    assert class_shares(np.array([0, 9, 9]), 4).tolist() == [0, 2, 2]


@pytest.mark.parametrize("over_budget", ["merge", "prune"])
def test_a_balanced_budget_keeps_a_tight_class_its_share(over_budget):
    """Every sample founds a prototype (threshold near 1): 100 of a wide class, 20 of a tight one, a budget of 40.
    Balanced, the wide class is cut to the tight one's 20; left free, the cheapest Ward merges are the tight
    class's own, and it loses half or more (the control)."""
    rng = np.random.default_rng(0)
    wide = np.eye(8)[0] + 0.5 * rng.standard_normal((100, 8))
    tight = np.eye(8)[1] + 0.05 * rng.standard_normal((20, 8))
    x, y = np.concatenate([wide, tight]).astype(np.float32), np.repeat([0, 1], [100, 20])

    def sizes(class_budget):
        s = store(similarity_threshold=0.99999, max_prototypes=40, over_budget=over_budget,
                  class_budget=class_budget, num_classes=2)
        s.observe(x, y)
        assert len(s) == 40
        if over_budget == "merge":
            assert s.counts[s.ids].sum() == 120  # merged, nothing lost
        return np.bincount(s.majority(s.ids), minlength=2).tolist()

    assert sizes("balanced") == [20, 20]
    if over_budget == "merge":
        free = sizes("free")
        assert free[1] <= 10, free


def test_merge_threshold_joins_near_duplicates_count_weighted():
    s = store(similarity_threshold=0.9999, merge_threshold=0.95, maintenance_interval=1, purity_gate=False)
    a, b = np.array([[1.0, 0, 0, 0, 0, 0, 0, 0]], np.float32), np.array([[1.0, 0.1, 0, 0, 0, 0, 0, 0]], np.float32)
    s.observe(np.concatenate([a, a, a]), np.zeros(3, int))
    s.observe(b, np.zeros(1, int))
    assert len(s) == 1 and s.events["merges"] == 1
    assert np.allclose(s.means[s.ids[0]], (3 * a[0] + b[0]) / 4, atol=1e-6)


def test_split_along_the_principal_direction():
    rng = np.random.default_rng(0)
    two = np.concatenate([np.eye(8)[0] + np.eye(8)[1], np.eye(8)[0] - np.eye(8)[1]]).reshape(2, 8)
    x = two[rng.integers(0, 2, 200)] + 0.01 * rng.standard_normal((200, 8))
    s = store(similarity_threshold=-1.0, split_threshold=0.1, maintenance_interval=200, num_classes=1)
    s.observe(x.astype(np.float32), np.zeros(200, int))
    assert s.events["splits"] >= 1 and len(s) >= 2
    means = s.means[s.ids]
    assert means[:, 1].max() > 0.5 and means[:, 1].min() < -0.5  # the halves sit on the two modes


def test_whitening_equalises_within_class_covariance():
    rng = np.random.default_rng(0)
    scale = np.array([10.0, 1.0, 0.1, 1.0], np.float32)
    y = rng.integers(0, 2, 4000)
    x = (rng.standard_normal((4000, 4)) * scale + 5 * y[:, None]).astype(np.float32)
    c = Conditioner(4, 2, "whiten", shrinkage=1e-6)
    for i in range(0, 4000, 1000):  # batched running statistics equal the full-data ones
        c.update(x[i:i + 1000], y[i:i + 1000])
    c.refresh()
    z = (x - c.mean) @ c.W
    within = np.mean([np.cov(z[y == k].T) for k in (0, 1)], axis=0)
    assert np.allclose(within, np.eye(4), atol=0.1)
    projected = Conditioner(4, 2, "whiten", projection_dim=2)
    projected.update(x, y)
    projected.refresh()
    assert projected.transform(x).shape == (4000, 2)


def test_a_projection_applies_only_to_features_wider_than_it():
    """projection_dim (256 by default) never widens: narrower features keep their dimension and need no
    whitening for it; a projection that would apply needs conditioning=whiten."""
    assert Conditioner(8, 2, "none", projection_dim=256).out_dim == 8
    assert PrototypeStore(8, 2, conditioning="center").conditioner.out_dim == 8
    with pytest.raises(ConfigError, match="conditioning=whiten"):
        Conditioner(512, 2, "none", projection_dim=256)
    assert Conditioner(512, 2, "whiten", projection_dim=256).out_dim == 256


def test_running_within_covariance_is_the_pooled_within_class_scatter():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 900)
    x = (rng.standard_normal((900, 6)) @ rng.standard_normal((6, 6)) + 3 * y[:, None]).astype(np.float32)
    c, partial = Conditioner(6, 3, "whiten"), Conditioner(6, 3, "whiten")
    for i in range(0, 900, 128):  # batches that split every class: the running merge must be exact
        c.update(x[i:i + 128], y[i:i + 128])
        if i < 768:
            partial.update(x[i:i + 128], y[i:i + 128])
    pooled = sum((x[y == k] - x[y == k].mean(0)).T.astype(np.float64) @ (x[y == k] - x[y == k].mean(0)) for k in range(3))
    assert c.within.shape == (6 * 7 // 2,)  # the lower triangle, packed
    assert np.allclose(c.within_covariance().numpy(), pooled / 900, atol=1e-4)
    # control: the check tells a covariance missing the last batch apart
    assert not np.allclose(partial.within_covariance().numpy() * 768 / 900, pooled / 900, atol=1e-4)


def test_memory_bytes_count_every_array_the_store_keeps():
    x, y = blobs(np.eye(8)[:3] + 0.2, per=40, spread=0.2)
    s = store(similarity_threshold=0.999, max_prototypes=12, conditioning="whiten", projection_dim=4)
    s.observe(x, y)
    held = [a for a in vars(s.conditioner).values() if isinstance(a, np.ndarray)]
    # (this failed while the conditioner kept a principal basis that memory_bytes left out)
    assert s.conditioner.W is not None and sum(a.nbytes for a in held) == s.conditioner.nbytes
    per_prototype = sum(getattr(s, name)[0].nbytes for name in s.ARRAYS if getattr(s, name) is not None)
    assert s.nbytes == per_prototype * len(s) + s.conditioner.nbytes + s.backend.nbytes


def test_backends_agree_and_survive_removal_and_re_adding():
    rng = np.random.default_rng(1)
    v = rng.standard_normal((300, 16)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    exact, hnsw, faiss = ExactBackend(16, precision="float32"), HnswBackend(16, ef_search=200), FaissBackend(16)
    for b in (exact, hnsw, faiss):
        b.upsert(np.arange(300), v)
        b.remove(np.arange(0, 300, 2))
        b.upsert(np.array([4]), v[4:5])
    assert len(exact) == len(hnsw) == len(faiss) == 151
    ids_e, sims_e = exact.search(v[:20], 5)
    ids_h, sims_h = hnsw.search(v[:20], 5)
    ids_f, sims_f = faiss.search(v[:20], 5)
    assert (ids_e == ids_h).mean() > 0.95 and np.allclose(sims_e[:, 0], sims_h[:, 0], atol=1e-5)
    assert (ids_e == ids_f).all() and np.allclose(sims_e, sims_f, atol=1e-5)
    assert not np.isin(ids_e, np.arange(0, 300, 2)[np.arange(0, 300, 2) != 4]).any()


def test_exact_backend_in_float16_answers_as_in_float32_at_half_the_bytes():
    rng = np.random.default_rng(4)
    v = rng.standard_normal((400, 32)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    full, half = ExactBackend(32, precision="float32"), ExactBackend(32, precision="float16")
    for b in (full, half):
        b.upsert(np.arange(400), v)
        b.remove(np.arange(0, 400, 3))
    ids_f, sims_f = full.search(v[:50], 5)
    ids_h, sims_h = half.search(v[:50], 5)
    assert (ids_f[:, 0] == ids_h[:, 0]).all() and np.abs(sims_f - sims_h).max() < 2e-3
    assert np.abs(half.vectors(np.array([1, 2])) - v[[1, 2]]).max() < 1e-3
    assert half.nbytes < 0.6 * full.nbytes
    with pytest.raises(KeyError):  # control: a removed id has no vector
        half.vectors(np.array([0]))
    with pytest.raises(ConfigError, match="precision"):
        ExactBackend(32, precision="int8")


def test_an_older_conditioner_state_loads_to_the_same_covariance():
    """Checkpoints before the packed scatter kept the full matrix and a principal basis."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 3, 500)
    x = (rng.standard_normal((500, 12)) + y[:, None]).astype(np.float32)
    c = Conditioner(12, 3, "whiten", projection_dim=4)
    c.update(x, y)
    c.refresh()
    old = {**c.state_dict(), "within": c.within_covariance().float().numpy() * 500, "basis": np.eye(12, 4, dtype=np.float32)}
    loaded = Conditioner(12, 3, "whiten", projection_dim=4)
    loaded.load_state_dict(old)
    assert np.allclose(loaded.within_covariance().numpy(), c.within_covariance().numpy(), atol=1e-5)
    assert not hasattr(loaded, "basis") and np.allclose(loaded.transform(x), c.transform(x), atol=1e-5)


def test_hnswlib_recall_on_real_features():
    """Top-10 recall of hnswlib against exact search, on EfficientNet-Lite0 features of real digits."""
    from neurocl.data import Digits
    from neurocl.encoders import EfficientNetLite, encode_split

    splits = Digits().load()
    encoder = EfficientNetLite(resolution=32, device="cpu")
    base = encode_split(encoder, splits.train).numpy()
    queries = encode_split(encoder, splits.test).numpy()
    c = Conditioner(1280, 10, "whiten", projection_dim=256)
    c.update(base, splits.train.labels.numpy())
    c.refresh()
    base, queries = c.transform(base), c.transform(queries)
    configured = compose().memory.backend_options.hnswlib  # M, ef_construction, ef_search of conf/memory
    exact, hnsw = ExactBackend(256, precision="float32"), HnswBackend(256, **configured)
    for b in (exact, hnsw):
        b.upsert(np.arange(len(base)), base)
    truth, _ = exact.search(queries, 10)
    found, _ = hnsw.search(queries, 10)
    recall = np.mean([len(set(t) & set(f)) / 10 for t, f in zip(truth, found)])
    assert recall >= 0.98


@pytest.mark.parametrize("backend", ["hnswlib", "exact", "faiss"])
def test_save_and_load_round_trip_exactly(tmp_path, backend):
    x, y = blobs(np.eye(8)[:3] + 0.2, per=50, spread=0.3)
    # readout=vote: the store alone is saved here (auto's held-out samples and choice live in state_dict)
    memory = PrototypeMemory(8, 3, similarity_threshold=0.99, max_prototypes=20, conditioning="whiten",
                             backend=backend, maintenance_interval=40, readout="vote")
    memory.observe(torch.from_numpy(x), torch.from_numpy(y))
    memory.store.save(tmp_path / "store")
    again = PrototypeMemory(8, 3, conditioning="whiten", backend=backend, readout="vote")
    again.store.load(tmp_path / "store")
    a, b = memory.predict(torch.from_numpy(x)), again.predict(torch.from_numpy(x))
    assert torch.equal(a.labels, b.labels) and torch.allclose(a.scores, b.scores)
    assert torch.equal(a.evidence["prototype_ids"], b.evidence["prototype_ids"])
    assert again.stats() == memory.stats()


def test_corrupt_or_mismatched_saved_store_is_refused(tmp_path):
    x, y = blobs(CENTRES)
    s = store(backend="hnswlib")
    s.observe(x, y)
    s.save(tmp_path)
    raw = bytearray((tmp_path / "index.hnsw").read_bytes())
    raw[100] ^= 0xFF
    (tmp_path / "index.hnsw").write_bytes(bytes(raw))
    fresh = store(backend="hnswlib")
    with pytest.raises(DataError, match="index.hnsw is missing or corrupt"):
        fresh.load(tmp_path)
    assert len(fresh) == 0  # nothing half-loaded
    s.save(tmp_path)
    with pytest.raises(DataError, match="8-d prototypes, this store is 4-d"):
        store(dim=4, backend="hnswlib").load(tmp_path)
    with pytest.raises(DataError, match="cannot read"):
        store().load(tmp_path / "nowhere")


def test_analyzer_statistics():
    x, y = blobs(CENTRES, per=40, spread=0.2)
    s = store(similarity_threshold=0.95, max_prototypes=9)
    s.observe(x, y)
    stats = PrototypeAnalyzer(s).stats()
    assert stats["prototypes"] == 9 and stats["purity_weighted"] == 1.0
    assert 0 < stats["intra_similarity"] <= 1 and -1 <= stats["inter_similarity_nearest"] <= 1
    assert stats["memory_ratio"] > 0 and sum(stats["usage_histogram"]) == 9
    points, labels, counts = PrototypeAnalyzer(s).map_2d()
    assert points.shape == (9, 2) and counts.sum() == len(x)


def test_oas_shrinks_hard_on_few_samples_and_little_on_many():
    from neurocl.memory.conditioning import oas_shrinkage

    rng = np.random.default_rng(0)
    scale = np.linspace(0.1, 3.0, 32)
    rhos = []
    for n in (40, 400, 40000):
        x = rng.standard_normal((n, 32)) * scale
        rhos.append(oas_shrinkage(torch.from_numpy(np.cov(x.T)), n))
    assert rhos[0] > rhos[1] > rhos[2] and rhos[2] < 0.05 and 0 < rhos[0] <= 1
    # positive control: isotropic data is shrunk fully to the identity whatever n
    assert oas_shrinkage(torch.eye(32, dtype=torch.float64), 40000) == pytest.approx(1.0)


def test_whitening_refreshes_when_a_class_appears_and_when_the_count_doubles():
    s = store(conditioning="whiten")
    x, y = blobs(CENTRES, per=64)
    first = y < 2
    s.observe(x[first][:20], y[first][:20])
    assert s.events["refreshes"] == 1
    s.observe(x[first][20:30], y[first][20:30])  # 30 < 2 x 20: no refresh
    assert s.events["refreshes"] == 1
    s.observe(x[first][30:45], y[first][30:45])  # 45 >= 2 x 20
    assert s.events["refreshes"] == 2
    s.observe(x[~first][:5], y[~first][:5])  # a new class
    assert s.events["refreshes"] == 3


def test_batch_founding_equals_one_at_a_time_on_separated_clusters():
    x, y = blobs(CENTRES, per=20)
    batched, single = store(momentum=0.01), store(momentum=0.01)  # exact means while n <= 100
    batched.observe(x, y)
    for i in range(len(x)):
        single.observe(x[i:i + 1], y[i:i + 1])
    for s in (batched, single):
        assert len(s) == 3 and sorted(s.counts[s.ids]) == [20, 20, 20]
    order = lambda s: np.argsort(s.majority(s.ids))
    assert np.allclose(batched.means[batched.ids][order(batched)], single.means[single.ids][order(single)], atol=1e-5)

import math
import os

import pytest
import torch
import torch.nn.functional as F

from neurocl.encoders.projection import (FREEZE_POLICIES, ContrastiveProjection, StreamProjection, retrieval_recall,
                                         stream_projection)
from neurocl.errors import ConfigError, DataError

FAST = {"epochs": 20, "batch_size": 128, "lr": 1e-2, "patience": 5}


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def paired(n: int, dim_a: int = 32, dim_b: int = 24, noise: float = 0.1, seed: int = 0):
    """Modality b = a fixed random linear map of a, plus noise: a aligned pair per row."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(dim_a, dim_b, generator=torch.Generator().manual_seed(123))  # the same map for every split
    a = torch.randn(n, dim_a, generator=g)
    b = a @ mix / math.sqrt(dim_a) + noise * torch.randn(n, dim_b, generator=g)
    return a, b


# --- retrieval_recall -----------------------------------------------------------------------------------------

def test_recall_by_hand():
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    queries = torch.tensor([[1.0, 0.1],    # nearest key 0: its own, rank 1
                            [1.0, 0.2],    # key 0 (cos .98) > key 1 (cos .20) > key 2: its match ranks 2
                            [0.0, 1.0]])   # key 1 first, then keys 0 and 2 tied (cos 0): its match ranks 2 or 3
    r = retrieval_recall(queries, keys, ks=(1, 2, 3))
    # query 2: g = 1 key strictly more similar, e = 1 other key tied: @1 0, @2 (2-1)/2 = 0.5, @3 1
    assert r["R@1"] == pytest.approx(1 / 3)
    assert r["R@2"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert r["R@3"] == pytest.approx(1.0)


def test_recall_all_tied_is_chance_and_scale_free():
    same = torch.ones(5, 3)
    r = retrieval_recall(same, same, ks=(1, 2))
    assert r == {"R@1": pytest.approx(1 / 5), "R@2": pytest.approx(2 / 5)}
    x = torch.randn(7, 4, generator=torch.Generator().manual_seed(0))
    assert retrieval_recall(x, x)["R@1"] == 1.0
    assert retrieval_recall(3 * x, x, ks=(1,)) == retrieval_recall(x, x, ks=(1,))  # cosine: scale free


def test_recall_rejects_unpaired():
    with pytest.raises(DataError, match="paired"):
        retrieval_recall(torch.ones(3, 2), torch.ones(4, 2))
    with pytest.raises(ConfigError, match="ks"):
        retrieval_recall(torch.ones(3, 2), torch.ones(3, 2), ks=(0,))


# --- loss -----------------------------------------------------------------------------------------------------

def test_infonce_2x2_by_hand():
    head = ContrastiveProjection(2, 2, projection_dim=2, temperature=0.5)
    za = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    zb = F.normalize(torch.tensor([[1.0, 1.0], [0.0, 1.0]]), dim=1)
    s = 2 / math.sqrt(2)  # logit scale 1 / 0.5 times cos 45 degrees
    # logits = 2 * za @ zb.T = [[s, 0], [s, 2]]; cross-entropy = -logit of the match + log-sum-exp of its row
    a_to_b = ((-s + math.log(math.exp(s) + 1)) + (-2 + math.log(math.exp(s) + math.exp(2)))) / 2
    # b -> a: the columns [s, s] (match: first) and [0, 2] (match: second)
    b_to_a = ((-s + math.log(2 * math.exp(s))) + (-2 + math.log(1 + math.exp(2)))) / 2
    assert head.loss(za, zb).item() == pytest.approx((a_to_b + b_to_a) / 2, rel=1e-6)


def test_learned_temperature_is_clamped_as_in_clip():
    head = ContrastiveProjection(4, 4, projection_dim=2, learn_temperature=True)
    assert isinstance(head.log_logit_scale, torch.nn.Parameter)
    assert head.logit_scale.item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        head.log_logit_scale.fill_(10.0)
    assert head.logit_scale.item() == pytest.approx(100.0, rel=1e-5)
    fixed = ContrastiveProjection(4, 4, projection_dim=2)
    assert "log_logit_scale" not in dict(fixed.named_parameters())  # fixed: a buffer, never trained


# --- fitting --------------------------------------------------------------------------------------------------

def test_fit_aligns_held_out_pairs_and_untrained_is_chance():
    a, b = paired(600)
    a_test, b_test = paired(200, seed=1)
    head = ContrastiveProjection(32, 24, projection_dim=16, seed=0)
    before = retrieval_recall(head.project_a(a_test), head.project_b(b_test), ks=(1,))["R@1"]
    # positive control: the untrained heads are unrelated random maps, so retrieval is near chance (1/200)
    assert before < 0.05
    history = head.fit(a, b, **FAST, progress=False)
    after = retrieval_recall(head.project_a(a_test), head.project_b(b_test), ks=(1,))["R@1"]
    assert after > 0.8, (before, after)
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert head.project_a(a_test).norm(dim=1).allclose(torch.ones(200), atol=1e-5)


def test_early_stopping_keeps_the_best_state():
    a, b = paired(300, noise=2.0)  # noisy and few: it overfits, so the validation loss turns up
    head = ContrastiveProjection(32, 24, projection_dim=64, seed=0)
    history = head.fit(a, b, epochs=300, batch_size=32, lr=3e-2, weight_decay=0.0, patience=8, progress=False)
    losses = [h["val_loss"] for h in history]
    best = min(range(len(losses)), key=losses.__getitem__)
    assert len(history) < 300 and len(history) - 1 - best == 8  # stopped `patience` epochs after the best
    assert head.best_epoch == history[best]["epoch"]
    val = torch.randperm(300, generator=torch.Generator().manual_seed(0))[:30]  # the held-out rows of fit
    assert head.evaluate_loss(a[val], b[val], 32) == pytest.approx(losses[best], rel=1e-5)  # the best, not the last


def test_fit_that_never_improves_keeps_the_start():
    a, b = paired(100)
    projection = StreamProjection("stream", ContrastiveProjection(32, 24, projection_dim=8),
                                  {"epochs": 10, "lr": 1e-30, "patience": 3})  # steps vanish in float32
    start = {k: v.clone() for k, v in projection.head.state_dict().items()}
    assert projection.before_experience(0, a, b) is False  # no lower validation loss: nothing changed
    assert projection.head.best_epoch == 0 and len(projection.fits[0]["history"]) == 3
    assert all(torch.equal(start[k], v) for k, v in projection.head.state_dict().items())


def test_state_dict_round_trip_and_seeded_init():
    a, _ = paired(10)
    head = ContrastiveProjection(32, 24, projection_dim=8, seed=3, learn_temperature=True)
    copy = ContrastiveProjection(32, 24, projection_dim=8, seed=4, learn_temperature=True)
    assert not torch.allclose(head.project_a(a), copy.project_a(a))
    copy.load_state_dict(head.state_dict())
    assert torch.equal(head.project_a(a), copy.project_a(a)) and torch.equal(head.logit_scale, copy.logit_scale)
    assert torch.equal(ContrastiveProjection(32, 24, 8, seed=3).project_a(a), head.project_a(a))


def test_fit_is_deterministic():
    a, b = paired(200)
    runs = []
    for _ in range(2):
        head = ContrastiveProjection(32, 24, projection_dim=8)
        runs.append((head.fit(a, b, epochs=3, progress=False), head.project_a(a)))
    assert runs[0][0] == runs[1][0] and torch.equal(runs[0][1], runs[1][1])


# --- stream policies ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("policy, fits_at", [("frozen", []), ("first_experience", [0]), ("stream", [0, 1, 2])])
def test_policies_fit_when_they_should(policy, fits_at):
    projection = StreamProjection(policy, ContrastiveProjection(32, 24, projection_dim=8), {**FAST, "epochs": 5})
    x = paired(50, seed=9)[0]
    changed = []
    for t in range(3):
        before = projection.transform(x)
        a, b = paired(150, seed=t)
        did = projection.before_experience(t, a, b)
        assert did == (not torch.equal(before, projection.transform(x)))  # "changed" means the space changed
        changed.append(did)
    assert [f["experience"] for f in projection.fits] == fits_at
    assert [t for t in range(3) if changed[t]] == fits_at


def test_frozen_needs_no_pairs_but_fitting_does():
    assert StreamProjection("frozen", ContrastiveProjection(4, 4, 2)).before_experience(0) is False
    with pytest.raises(DataError, match="pairs"):
        StreamProjection("first_experience", ContrastiveProjection(4, 4, 2)).before_experience(0)


def test_checkpoint_loads_a_saved_head(tmp_path):
    head = ContrastiveProjection(32, 24, projection_dim=8, seed=5)
    torch.save(head.state_dict(), tmp_path / "head.pt")
    projection = stream_projection(32, 24, policy="frozen", projection_dim=8, checkpoint=str(tmp_path / "head.pt"))
    x = paired(5)[0]
    assert torch.equal(projection.transform(x), head.project_a(x))
    with pytest.raises(ConfigError, match="projection.checkpoint"):
        stream_projection(32, 24, projection_dim=16, checkpoint=str(tmp_path / "head.pt"))  # other dims
    with pytest.raises(ConfigError, match="no such file"):
        stream_projection(32, 24, checkpoint=str(tmp_path / "missing.pt"))


@pytest.mark.parametrize("build, key", [
    (lambda: StreamProjection("sometimes", ContrastiveProjection(4, 4, 2)), "projection.policy"),
    (lambda: StreamProjection("stream", ContrastiveProjection(4, 4, 2), {"epoch": 3}), "projection.fit"),
    (lambda: StreamProjection("stream", ContrastiveProjection(4, 4, 2), {"batch_size": 1}), "projection.fit.batch_size"),
    (lambda: StreamProjection("stream", ContrastiveProjection(4, 4, 2), {"validation_fraction": 0}),
     "projection.fit.validation_fraction"),
    (lambda: StreamProjection("stream", ContrastiveProjection(4, 4, 2), {"lr": -1}), "projection.fit.lr"),
    (lambda: ContrastiveProjection(4, 4, projection_dim=0), "projection.projection_dim"),
    (lambda: ContrastiveProjection(4, 4, temperature=0.0), "projection.temperature"),
    (lambda: ContrastiveProjection(4, 4, learn_temperature="yes"), "projection.learn_temperature"),
])
def test_bad_options_name_the_key_and_the_fix(build, key):
    with pytest.raises(ConfigError, match="Fix: ") as error:
        build()
    assert error.value.key == key


def test_fit_rejects_unpaired_features():
    head = ContrastiveProjection(4, 3, 2)
    with pytest.raises(DataError, match="row-paired"):
        head.fit(torch.ones(10, 4), torch.ones(9, 3), progress=False)
    with pytest.raises(DataError, match="dims"):
        head.fit(torch.ones(10, 5), torch.ones(10, 3), progress=False)


def test_config_group_composes_and_builds():
    from hydra.utils import instantiate

    from conftest import compose

    cfg = compose("experiment=iu_xray_pages", "projection=contrastive")  # its pair dataset follows the run's
    projection = instantiate(cfg.projection, dim_a=32, dim_b=24)
    assert isinstance(projection, StreamProjection) and projection.policy == "first_experience"
    assert projection.head.projection_dim == 256 and projection.fit_options["validation_fraction"] == 0.1
    assert projection.policy in FREEZE_POLICIES
    assert not compose().projection  # disabled by default: an empty group


# --- several tasks (torch.distributed, as neurocl.distributed starts it in a submitit job) ---------------------

def _fit_in_task(rank: int, world: int, init_file: str, out_file: str, share_gradients: bool):
    import torch.distributed as dist

    import neurocl.encoders.projection as projection

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    if not share_gradients:  # the control: each task steps on its own share's gradient only
        projection.average_gradients = lambda parameters, world: None
    a, b = paired(203)  # batches of 64 with a short last one: unequal shares
    head = ContrastiveProjection(32, 24, projection_dim=8)
    history = head.fit(a, b, epochs=3, batch_size=64, progress=False)
    if rank == 0:
        torch.save({"history": history, "state": head.state_dict()}, out_file)
    dist.barrier()
    dist.destroy_process_group()
    # about 1 run in 10, a thread torch leaves behind aborts the interpreter's exit ("terminate called without an
    # active exception", SIGABRT) after all the work above is done and written: leave without that teardown
    os._exit(0)


@pytest.mark.parametrize("share_gradients", [True, False])
def test_two_tasks_fit_the_head_one_process_fits(tmp_path, share_gradients):
    import torch.multiprocessing as mp

    a, b = paired(203)
    alone = ContrastiveProjection(32, 24, projection_dim=8)
    history = alone.fit(a, b, epochs=3, batch_size=64, progress=False)
    mp.spawn(_fit_in_task, args=(2, str(tmp_path / "init"), str(tmp_path / "out.pt"), share_gradients), nprocs=2)
    shared = torch.load(tmp_path / "out.pt", weights_only=True)
    same = all(torch.allclose(shared["state"][k], v, atol=1e-5) for k, v in alone.state_dict().items())
    assert same == share_gradients  # positive control: without averaged gradients the tasks drift apart
    if share_gradients:
        assert [h["epoch"] for h in shared["history"]] == [h["epoch"] for h in history]
        assert all(math.isclose(x["train_loss"], y["train_loss"], rel_tol=1e-4)
                   for x, y in zip(shared["history"], history))

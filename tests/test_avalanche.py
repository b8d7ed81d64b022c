"""Avalanche strategies as memories: same experiences, same predictions as Avalanche's own eval."""

import numpy as np
import pytest
import torch
from neurocl.run import build

from conftest import compose
from neurocl.driver import Features, evaluate
from neurocl.errors import ConfigError, NeuroclError
from neurocl.scenarios import ClassIncremental
from test_memory import clusters


def tiny_stream(num_classes=6):
    x, y = clusters(num_classes=num_classes, per_class=50, dim=16, spread=0.2, seed=0)
    train, test = torch.arange(len(y)) % 5 != 0, torch.arange(len(y)) % 5 == 0
    x, y, xt, yt = x[train], y[train], x[test], y[test]
    stream = ClassIncremental(classes_per_experience=2).build(x, y, xt, yt, num_classes)
    return stream, Features(x, y), Features(xt, yt)


FAST = {"strategy.train_epochs": 5, "strategy.train_mb_size": 16, "optimizer.lr": 0.02, "hidden": 32}


def avalanche_memory(name, evaluator=None, **overrides):
    cfg = compose(f"memory={name}", "device=cpu", *[f"memory.{k}={v}" for k, v in overrides.items()])
    return build(cfg.memory, dim=16, num_classes=6, evaluator=evaluator)


@pytest.mark.parametrize("name", ["naive", "replay", "icarl", "cope", "avalanche_slda"])
def test_our_R_is_avalanches_accuracy_matrix(name):
    from avalanche.evaluation.metrics import accuracy_matrix_metrics
    from avalanche.training.plugins import EvaluationPlugin

    torch.manual_seed(0)
    stream, _, test = tiny_stream()
    evaluator = EvaluationPlugin(*accuracy_matrix_metrics(), loggers=[])
    online = {"online_experience_size": 40, "strategy.train_mb_size": 40, "strategy.alpha": 0.5} if name == "cope" else {}
    memory = avalanche_memory(name, evaluator=evaluator, **{**FAST, **online})
    R, rows = np.zeros((3, 3)), []
    for t, experience in enumerate(stream.benchmark.train_stream):
        memory.train_experience(experience)
        R[t] = [evaluate(memory, test, e, False, batch_size=7)[0] for e in stream.experiences]
        memory.strategy.eval(stream.benchmark.test_stream)  # Avalanche's own loop, data loader and metric
        rows.append(memory.strategy.clock.train_exp_counter - 1)  # Avalanche's row: its training steps so far
    avalanche_R = evaluator.get_last_metrics()["EvalStream/Acc_Matrix"].numpy()[rows][:, :3]
    np.testing.assert_allclose(R, avalanche_R, atol=1e-6)
    assert R.max() >= 0.9  # it learnt: the comparison is not between two empty matrices


def test_untrained_avalanche_memory_abstains_and_refuses_loose_batches():
    memory = avalanche_memory("naive")
    prediction = memory.predict(torch.randn(4, 16))
    assert prediction.abstained.all()
    with pytest.raises(NeuroclError, match="train_experience"):
        memory.observe(torch.randn(4, 16), torch.zeros(4, dtype=torch.long))


def test_memory_counts_the_replay_buffer():
    stream, _, _ = tiny_stream()
    memory = avalanche_memory("replay", **{"strategy.mem_size": 30})
    head_bytes = memory.stats()["memory_bytes"]
    memory.train_experience(stream.benchmark.train_stream[0])
    assert memory.stats()["memory_bytes"] == head_bytes + 30 * 16 * 4


@pytest.mark.parametrize("name", ["naive", "avalanche_slda"])
def test_state_dict_round_trip(name):
    stream, _, test = tiny_stream()
    a, b = avalanche_memory(name, **FAST), avalanche_memory(name, **FAST)
    a.train_experience(stream.benchmark.train_stream[0])
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.predict(test.x).scores, b.predict(test.x).scores)


def test_bad_avalanche_config_is_named():
    with pytest.raises(ConfigError, match="memory.hidden"):
        avalanche_memory("naive", hidden=-1)
    with pytest.raises(ConfigError, match="memory.optimizer"):
        avalanche_memory("naive", optimizer="null")

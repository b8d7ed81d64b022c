import numpy as np
import pytest

from neurocl import metrics

# Hand-made: 3 experiences, experience 0 is forgotten, 1 peaks before the end.
R = np.array([
    [0.9, 0.1, 0.0],
    [0.6, 0.8, 0.2],
    [0.5, 0.7, 0.9],
])
b = np.array([0.0, 0.05, 0.1])


def test_accuracies():
    assert metrics.accuracy_last(R) == pytest.approx((0.5 + 0.7 + 0.9) / 3)
    assert metrics.average_incremental_accuracy(R) == pytest.approx((0.9 + 0.7 + 0.7) / 3)


def test_forgetting_definitions_differ_when_the_peak_is_not_the_diagonal():
    R2 = R.copy()
    R2[1, 0] = 0.95  # experience 0 peaks after its own training
    # Chaudhry: max over l < T of R[l, k] minus R[T, k]
    assert metrics.forgetting_chaudhry(R2) == pytest.approx(((0.95 - 0.5) + (0.8 - 0.7)) / 2)
    # Avalanche: R[k, k] minus R[T, k]
    assert metrics.forgetting_avalanche(R2) == pytest.approx(((0.9 - 0.5) + (0.8 - 0.7)) / 2)


def test_bwt_is_negative_when_forgetting_and_fwt_uses_untrained_accuracy():
    assert metrics.backward_transfer(R) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)
    assert metrics.backward_transfer(R) < 0
    assert metrics.forward_transfer(R, b) == pytest.approx(((0.1 - 0.05) + (0.2 - 0.1)) / 2)
    assert metrics.forward_transfer(R, [0.0, 0.5, 0.5]) < 0


def test_matrices():
    F = metrics.forgetting_matrix(R)
    assert np.isnan(F[0]).all() and np.isnan(F[1, 1:]).all()
    assert F[2, 0] == pytest.approx(0.4) and F[2, 1] == pytest.approx(0.1) and F[1, 0] == pytest.approx(0.3)
    Tr = metrics.transfer_matrix(R, b)
    assert Tr[2, 0] == pytest.approx(0.5 - 0.9)  # backward, below the diagonal
    assert Tr[0, 2] == pytest.approx(0.0 - 0.1)  # forward, above it
    assert Tr[1, 1] == pytest.approx(0.8 - 0.05)


def test_single_experience_and_bad_shapes():
    assert metrics.forgetting_chaudhry([[0.7]]) == 0.0 and metrics.forward_transfer([[0.7]], [0.1]) == 0.0
    with pytest.raises(ValueError, match="square"):
        metrics.accuracy_last(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="length 3"):
        metrics.forward_transfer(R, [0.0])


def test_per_class_accuracy_and_abstentions_count_as_wrong():
    predicted = np.array([0, 0, 1, -1, 2])
    targets = np.array([0, 1, 1, 1, 0])
    assert metrics.accuracy(predicted, targets) == pytest.approx(2 / 5)
    per_class = metrics.per_class_accuracy(predicted, targets, 4)
    assert per_class[0] == pytest.approx(0.5) and per_class[1] == pytest.approx(1 / 3)
    assert np.isnan(per_class[2]) and np.isnan(per_class[3])


def test_calibration_error_and_risk_coverage_by_hand():
    confidence = np.array([0.9, 0.9, 0.6, 0.6])
    correct = np.array([1, 1, 1, 0])
    # bins: {0.9: accuracy 1.0} and {0.6: accuracy 0.5}, half the queries each
    assert metrics.expected_calibration_error(confidence, correct, bins=10) == pytest.approx(0.5 * 0.1 + 0.5 * 0.1)
    rc = metrics.risk_coverage(confidence, correct, coverage=0.5)
    assert rc["accuracy_at_0.5_coverage"] == 1.0  # the two most confident are right
    assert rc["aurc"] == pytest.approx(np.mean([0, 0, 0, 0.25]))
    perfect = metrics.risk_coverage(np.array([0.9, 0.1]), np.array([1, 0]))
    assert perfect["aurc"] < metrics.risk_coverage(np.array([0.1, 0.9]), np.array([1, 0]))["aurc"]


# --- answers ------------------------------------------------------------------------------------------------

def test_top_k_accuracy_by_hand():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    targets = np.array([2, 2, 0])
    assert metrics.top_k_accuracy(scores, targets, 1) == 0.0
    assert metrics.top_k_accuracy(scores, targets, 2) == 2 / 3  # 2 is 2nd in row 0, 3rd in row 1
    assert metrics.top_k_accuracy(scores, targets, 3) == 1.0
    # a tie: [0.2, 0.2] in row 2 puts class 0 before class 1 (class order), so class 0 is 2nd, class 1 3rd
    assert metrics.top_k_accuracy(scores[2:], targets[2:], 2) == 1.0
    assert metrics.top_k_accuracy(scores[2:], np.array([1]), 2) == 0.0


def test_confusion_precision_recall_f1_with_abstentions_by_hand():
    targets = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, -1, -1])  # two abstentions
    matrix = metrics.confusion_matrix(predicted, targets, 3)
    assert matrix.tolist() == [[2, 1, 0, 0], [0, 1, 0, 1], [0, 0, 0, 1]]
    prf = metrics.precision_recall_f1(predicted, targets, 3)
    # class 0: precision 2/2, recall 2/3, F1 0.8; class 1: precision 1/2, recall 1/2, F1 0.5;
    # class 2: never answered (precision undefined), recall 0, F1 undefined -> 0 in the macro mean
    np.testing.assert_allclose(prf["precision"][:2], [1.0, 0.5])
    assert np.isnan(prf["precision"][2]) and prf["recall"][2] == 0
    np.testing.assert_allclose(prf["f1"][:2], [0.8, 0.5])
    assert prf["macro_f1"] == pytest.approx((0.8 + 0.5 + 0.0) / 3)
    assert metrics.selective(predicted, targets) == {"coverage": 4 / 6, "selective_accuracy": 3 / 4}
    assert np.isnan(metrics.selective(np.array([-1, -1]), np.array([0, 1]))["selective_accuracy"])


def test_risk_coverage_curve_by_hand():
    coverage, risk = metrics.risk_coverage_curve([0.9, 0.2, 0.6, 0.4], [1, 0, 0, 1])
    # by confidence: 0.9 right, 0.6 wrong, 0.4 right, 0.2 wrong
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(risk, [0.0, 0.5, 1 / 3, 0.5])
    assert metrics.risk_coverage([0.9, 0.2, 0.6, 0.4], [1, 0, 0, 1])["aurc"] == pytest.approx(risk.mean())

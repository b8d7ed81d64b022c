"""The store's readouts in closed form (neurocl/memory/readouts.py) against the textbook formulas they compute."""

import torch

from neurocl.memory import readouts


def problem(seed=0, C=4, d=6, n=50):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) @ torch.randn(d, d, generator=g, dtype=torch.float64)
    covariance = x.T @ x / n
    return torch.randn(C, d, generator=g, dtype=torch.float64), covariance, torch.randn(d, generator=g, dtype=torch.float64)


def shrunk(covariance, rho):
    d = covariance.shape[0]
    return (1 - rho) * covariance + rho * torch.trace(covariance) / d * torch.eye(d, dtype=covariance.dtype)


def test_lda_from_the_eigendecomposition_is_the_shrunk_solve():
    means, covariance, _ = problem()
    eigen = readouts.within_eigen(covariance)
    for rho in (1e-3, 0.1, 0.3):
        weights = torch.linalg.solve(shrunk(covariance, rho), means.T)
        fitted = readouts.fit_lda(means, eigen, rho)
        assert torch.allclose(fitted.weights.double(), weights, rtol=1e-4, atol=1e-5)
        assert torch.allclose(fitted.bias.double(), -0.5 * (means.T * weights).sum(0), rtol=1e-4, atol=1e-5)
    control = torch.linalg.solve(covariance, means.T)  # no shrinkage: other weights
    assert not torch.allclose(readouts.fit_lda(means, eigen, 0.3).weights.double(), control, rtol=1e-2)


def test_whitened_ncm_cosines_are_those_of_the_symmetric_whitener():
    means, covariance, centre = problem()
    queries = torch.randn(20, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    rho = 0.1
    values, vectors = torch.linalg.eigh(shrunk(covariance, rho))
    whitener = (vectors * values.rsqrt()) @ vectors.T  # Sigma_rho^(-1/2)
    unit = lambda z: torch.nn.functional.normalize(z, dim=1)
    expected = unit((queries - centre) @ whitener) @ unit((means - centre) @ whitener).T
    fitted = readouts.fit_whitened_ncm(means.float(), centre.float(), readouts.within_eigen(covariance), rho)
    assert torch.allclose(readouts.whitened_ncm_scores(queries.float(), fitted).double(), expected, atol=1e-5)
    plain = unit(queries - centre) @ unit(means - centre).T  # control: without whitening the cosines differ
    assert not torch.allclose(plain, expected, atol=1e-2)


def test_gaussian_kernel_and_count_weighted_ridge():
    g = torch.Generator().manual_seed(2)
    prototypes = torch.nn.functional.normalize(torch.randn(30, 5, generator=g), dim=1)
    inner = prototypes @ prototypes.T
    scale = readouts.median_squared_distance(inner)
    distances = torch.cdist(prototypes.double(), prototypes.double()) ** 2
    gram = readouts.gaussian(inner, scale)
    assert torch.allclose(gram.double(), torch.exp(-distances / scale), atol=1e-5)
    assert torch.equal(inner, prototypes @ prototypes.T)  # gaussian() leaves its input alone
    counts, shares = torch.randint(1, 9, (30,), generator=g).float(), torch.rand(30, 3, generator=g)
    gram64 = gram.double()
    fitted = readouts.fit_kernel_ridge(prototypes, gram64, counts, shares, scale, lam=0.1)
    expected = torch.linalg.solve(gram.double() + torch.diag(0.1 / counts.double()), shares.double())
    assert torch.allclose(fitted.coefficients.double(), expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(gram64, gram.double())  # the caller's Gram is not changed, float64 or not


def test_refined_float32_solve_reaches_float64_accuracy_and_falls_back_when_it_cannot():
    g = torch.Generator().manual_seed(3)
    points = torch.nn.functional.normalize(torch.randn(400, 3, generator=g, dtype=torch.float64), dim=1)
    kernel = torch.exp(-torch.cdist(points, points) ** 2)  # 400 points on a sphere: ill-conditioned
    rhs = torch.rand(400, 4, generator=g, dtype=torch.float64)
    for ridge in (1e-2, 1e-4):  # condition numbers about 1e4 and 1e6 (the store's are 8e3 to 4e5): refined
        system = kernel + ridge * torch.eye(400, dtype=torch.float64)
        exact = torch.linalg.solve(system, rhs)
        solved = readouts.solve_positive_definite(system, rhs)
        assert (solved - exact).abs().max() / exact.abs().max() < 1e-9
        # control: float32 alone is far from float64 at these condition numbers
        plain = torch.linalg.solve(system.float(), rhs.float()).double()
        assert (plain - exact).abs().max() / exact.abs().max() > 1e-6
    # beyond float32's reach (condition number about 1e12): the float64 factorisation answers
    system = kernel + 1e-10 * torch.eye(400, dtype=torch.float64)
    float64 = readouts._cholesky_solve(torch.linalg.cholesky(system), rhs)
    assert torch.equal(readouts.solve_positive_definite(system, rhs), float64)


def test_the_bandwidth_stays_positive_when_every_prototype_is_the_same():
    same = torch.nn.functional.normalize(torch.ones(5, 3), dim=1)
    assert readouts.median_squared_distance(same @ same.T) > 0

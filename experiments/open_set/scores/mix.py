"""Class-conditional Gaussian mixtures with a tied (pooled within-component) covariance: k-means per class
splits each class into M components; score = min over all components of the shrunk-pooled Mahalanobis distance."""
import numpy as np, torch
from common import *
from gauss import shared_maha, class_maha, power
from knn import kmeans, whitener

def components(X, y, M, assign='raw', iters=15):
    yc = np.zeros(len(y), np.int64)
    if assign == 'white':
        m, W = whitener(X, y)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c); Z = torch.from_numpy(X[idx])
        if assign == 'white': Z = (Z - m) @ W
        if M == 1: a = np.zeros(len(idx), np.int64)
        else:
            C, _, _ = kmeans(Z, M, iters)
            a = ((Z * Z).sum(1, keepdim=True) - 2 * Z @ C.T + (C * C).sum(1)).argmin(1).numpy()
        yc[idx] = c * 1000 + a
    return yc

def tied_mixture(X, y, M=8, assign='raw', rho='oas', per_class=False, dim=None):
    yc = components(X, y, M, assign)
    if per_class:
        return class_maha(X, yc, rho, 'maha', dim)
    return shared_maha(X, yc, rho, dim=dim)

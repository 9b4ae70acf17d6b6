"""scikit-learn baselines on the digits leave-one-class-out splits (the same split Skip-GANomaly sees).

Each model is fitted on the normal training images only (raw 64-dim vectors scaled to [0, 1]) and scored on
the test set: PCA reconstruction error, One-Class SVM, Isolation Forest. Settings are fixed up front, not tuned
on test data.
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.neighbors import NearestNeighbors
from sklearn.svm import OneClassSVM

from skipgan.data.datasets import digits_split_indices


def pca_score(train, test, variance=0.9):
    pca = PCA(n_components=variance, svd_solver="full", random_state=0).fit(train)
    recon = pca.inverse_transform(pca.transform(test))
    return ((test - recon) ** 2).mean(1)


def ocsvm_score(train, test):
    return -OneClassSVM(kernel="rbf", gamma="scale", nu=0.1).fit(train).decision_function(test)


def iforest_score(train, test):
    return -IsolationForest(n_estimators=200, random_state=0).fit(train).score_samples(test)


def nearest_neighbour_score(train, test):
    return NearestNeighbors(n_neighbors=1).fit(train).kneighbors(test)[0][:, 0]


BASELINES = {"PCA": pca_score, "OC-SVM": ocsvm_score, "IsolationForest": iforest_score}
# Not a column of the table: a reference for how separable these splits are (distance to the nearest normal
# training image). It memorises the training set and gives no error map; see docs/accuracy.md.
REFERENCES = {"1-NN distance": nearest_neighbour_score}


def baseline_aurocs(abnormal_class: int, seed: int = 0, methods: dict = BASELINES) -> dict[str, float]:
    x = load_digits().data / 16.0
    train_idx, test_idx, labels = digits_split_indices(abnormal_class, seed)
    return {name: float(roc_auc_score(labels, fn(x[train_idx], x[test_idx]))) for name, fn in methods.items()}


if __name__ == "__main__":
    methods = {**BASELINES, **REFERENCES}
    rows = {k: baseline_aurocs(k, methods=methods) for k in range(10)}
    for name in methods:
        vals = [rows[k][name] for k in range(10)]
        print(f"{name:16s}", " ".join(f"{v:.3f}" for v in vals), f"mean {np.mean(vals):.3f}")

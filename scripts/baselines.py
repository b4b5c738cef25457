#!/usr/bin/env python3
"""Reference baselines on exactly the splits `complaintflow train` uses.

Input: the JSON Lines written by the models crate's `export_splits` example (labelled
complaints as the Rust readers normalised them, with `label`, `hash_train` and `window`):

    cargo run --release -p complaintflow-models --example export_splits -- \
        /work/shared/datasets/cfpb/complaints-dev.json /tmp/splits/cfpb.jsonl
    pip install scikit-learn lightgbm pandas
    python3 scripts/baselines.py /tmp/splits/cfpb.jsonl

Models (the three columns of issue 13's table):
- sklearn LR: one-hot of the categorical fields (unknown levels ignored) + TF-IDF of word
  1-2-grams of the narrative (min_df 2, sublinear tf), LogisticRegression(C=1, lbfgs).
- LightGBM: the categorical fields as pandas categories (LightGBM's native categorical
  splits) + year / month / weekday / days-to-company; 400 rounds, 31 leaves, lr 0.05.
- blend: mean of the two probabilities.
- perpetual (with --perpetual; `pip install perpetual`, the PyPI build of the same Rust core
  as the `perpetual` crate): PerpetualBooster(LogLoss, budget 0.5 unless --budget) on the
  LightGBM columns, categoricals native. A reference for the crate choice in docs/MODELS.md.

Evaluations: hash split (train on hash_train, score the rest) and temporal (train on the
`train` window, score the `test` and `out_of_time` windows). Prints AUC, PR-AUC and ECE
(10 equal-width bins) and, with --json, writes them to a file.
"""

import argparse
import json
import sys
import time

import numpy as np
import pandas as pd
from scipy.sparse import hstack
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.preprocessing import OneHotEncoder

CATS = [
    "product",
    "sub_product",
    "issue",
    "sub_issue",
    "company",
    "state",
    "submitted_via",
    "tags",
    "consumer_consent_provided",
]


def ece(p, y, bins=10):
    p = np.asarray(p)
    y = np.asarray(y, dtype=float)
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.mean() * abs(p[m].mean() - y[m].mean())
    return total


def prepare(df):
    df = df.copy()
    for c in CATS:
        df[c] = df[c].fillna("(missing)").astype(str)
    df["narrative"] = df["narrative"].fillna("")
    d = pd.to_datetime(df["date_received"])
    sent = pd.to_datetime(df["date_sent_to_company"], errors="coerce")
    df["year"] = d.dt.year
    df["month"] = d.dt.month
    df["weekday"] = d.dt.weekday
    df["days_to_company"] = (sent - d).dt.days.fillna(-1)
    return df


def fit_lr(tr, te_list):
    ohe = OneHotEncoder(handle_unknown="ignore")
    tfidf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    xtr = hstack([ohe.fit_transform(tr[CATS]), tfidf.fit_transform(tr["narrative"])]).tocsr()
    lr = LogisticRegression(C=1.0, max_iter=2000)
    lr.fit(xtr, tr["label"])
    out = []
    for te in te_list:
        xte = hstack([ohe.transform(te[CATS]), tfidf.transform(te["narrative"])]).tocsr()
        out.append(lr.predict_proba(xte)[:, 1])
    return out


def fit_lgbm(tr, te_list):
    import lightgbm as lgb

    cols = CATS + ["year", "month", "weekday", "days_to_company"]

    def frame(df, cats=None):
        x = df[cols].copy()
        for c in CATS:
            x[c] = pd.Categorical(x[c], categories=cats[c] if cats else None)
        return x

    xtr = frame(tr)
    cats = {c: xtr[c].cat.categories for c in CATS}
    model = lgb.LGBMClassifier(
        n_estimators=400,
        learning_rate=0.05,
        num_leaves=31,
        min_child_samples=20,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.8,
        verbose=-1,
        n_jobs=2,
    )
    model.fit(xtr, tr["label"], categorical_feature=CATS)
    return [model.predict_proba(frame(te, cats))[:, 1] for te in te_list]


def fit_perpetual(tr, te_list, budget):
    from perpetual import PerpetualBooster

    cols = CATS + ["year", "month", "weekday", "days_to_company"]

    def frame(df, cats=None):
        x = df[cols].copy()
        for c in CATS:
            x[c] = pd.Categorical(x[c], categories=cats[c] if cats else None)
        return x

    xtr = frame(tr)
    cats = {c: xtr[c].cat.categories for c in CATS}
    model = PerpetualBooster(objective="LogLoss", budget=budget, num_threads=2)
    model.fit(xtr, tr["label"].to_numpy())
    return [model.predict_proba(frame(te, cats))[:, 1] for te in te_list]


def metrics(p, y):
    return {
        "auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "ece": float(ece(p, y)),
        "n": int(len(y)),
    }


def run(tr, tests, perpetual_budget=None):
    t = time.time()
    lr = fit_lr(tr, [te for _, te in tests])
    t_lr = time.time() - t
    t = time.time()
    gb = fit_lgbm(tr, [te for _, te in tests])
    t_gb = time.time() - t
    pp = [None] * len(tests)
    t_pp = None
    if perpetual_budget is not None:
        t = time.time()
        pp = fit_perpetual(tr, [te for _, te in tests], perpetual_budget)
        t_pp = time.time() - t
    res = {}
    for (name, te), a, b, c in zip(tests, lr, gb, pp):
        y = te["label"].to_numpy()
        res[name] = {
            "sklearn_lr": metrics(a, y),
            "lightgbm": metrics(b, y),
            "blend": metrics((a + b) / 2, y),
        }
        if c is not None:
            res[name]["perpetual"] = metrics(c, y)
    res["fit_seconds"] = {"sklearn_lr": t_lr, "lightgbm": t_gb, "perpetual": t_pp}
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("splits", help="JSON Lines from the export_splits example")
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--perpetual", action="store_true", help="also fit PerpetualBooster")
    ap.add_argument("--budget", type=float, default=0.5, help="PerpetualBooster budget")
    a = ap.parse_args()
    df = prepare(pd.read_json(a.splits, lines=True))
    df["label"] = df["label"].astype(int)
    out = {}
    hash_tr = df[df["hash_train"]]
    hash_te = df[~df["hash_train"]]
    budget = a.budget if a.perpetual else None
    out["hash"] = run(hash_tr, [("test", hash_te)], budget)
    w = df["window"]
    out["temporal"] = run(
        df[w == "train"],
        [("test", df[w == "test"]), ("out_of_time", df[w == "out_of_time"])],
        budget,
    )
    for split, r in out.items():
        for win, fams in r.items():
            if win == "fit_seconds":
                continue
            for fam, m in fams.items():
                print(
                    f"{split:<9} {win:<12} {fam:<11} AUC {m['auc']:.4f}  PR-AUC {m['pr_auc']:.4f}  "
                    f"ECE {m['ece']:.4f}  n {m['n']}"
                )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

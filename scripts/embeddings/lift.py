"""Out-of-fold AUC lift of pocket-encoder narrative embeddings (issue 13 item 7): 5-fold CV
of sklearn LR on the hash training split, with and without the 384 embedding columns (+ a
narrative flag). Kept only if OOF AUC rises by 0.005 or more (it did not: docs/MODELS.md).
usage: lift.py SPLITS.jsonl EMB.csv"""
import sys, numpy as np, pandas as pd
from scipy.sparse import hstack, csr_matrix
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold
import os
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import baselines as B

df = B.prepare(pd.read_json(sys.argv[1], lines=True))
df["label"] = df["label"].astype(int)
emb = pd.read_csv(sys.argv[2], header=None)
emb = emb.set_index(0)
tr = df[df["hash_train"]].reset_index(drop=True)
E = np.zeros((len(tr), emb.shape[1]), dtype=np.float32)
has = tr["complaint_id"].isin(emb.index).to_numpy()
E[has] = emb.loc[tr.loc[has, "complaint_id"]].to_numpy()
y = tr["label"].to_numpy()
print(f"train rows {len(tr)}, with narrative embedding {has.sum()}")
skf = StratifiedKFold(5, shuffle=True, random_state=0)
def oof(use_emb, use_text=True):
    p = np.zeros(len(tr))
    for a, b in skf.split(tr, y):
        ohe = OneHotEncoder(handle_unknown="ignore")
        parts_a = [ohe.fit_transform(tr.loc[a, B.CATS])]
        parts_b = [ohe.transform(tr.loc[b, B.CATS])]
        if use_text:
            tf = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
            parts_a.append(tf.fit_transform(tr.loc[a, "narrative"]))
            parts_b.append(tf.transform(tr.loc[b, "narrative"]))
        if use_emb:
            parts_a.append(csr_matrix(np.c_[E[a], has[a]]))
            parts_b.append(csr_matrix(np.c_[E[b], has[b]]))
        m = LogisticRegression(C=1.0, max_iter=3000).fit(hstack(parts_a).tocsr(), y[a])
        p[b] = m.predict_proba(hstack(parts_b).tocsr())[:, 1]
    return p
for name, ue, ut in [("one-hot + tfidf", False, True), ("one-hot + tfidf + emb", True, True),
                     ("one-hot", False, False), ("one-hot + emb", True, False)]:
    p = oof(ue, ut)
    print(f"{name:<24} OOF AUC all {roc_auc_score(y, p):.4f}   narrative subset {roc_auc_score(y[has], p[has]):.4f}")

//! Gradient-boosted decision trees for binary log-loss: a compact histogram learner (the
//! LightGBM recipe: quantile bins, leaf-wise growth, histogram subtraction, row and column
//! subsampling, L2 leaf penalty) and a flat, serde-plain tree format for scoring.
//!
//! Why not a crate: `perpetual` 2.3 / 3.0-rc (the maintained pure-Rust GBM) pulls `rayon`,
//! `sysinfo` and `rand 0.10` into the engine, trains in f64 on its own thread pool (this
//! machine has 2 shared cores) and keeps its trees in its own types; here the ensemble must
//! be a plain serde value that bincode ships between timely workers. Its PyPI build (same
//! Rust core) on the baseline columns reached hash-split AUC 0.78–0.80 on the cfpb dev set
//! against 0.848 for this learner on the encoded rows (docs/MODELS.md). ~450 lines, tested
//! below.
//!
//! Contract: [`Ensemble::margin`] is `base + Σ leaf values` for a dense row of
//! `n_features` f32 values (no NaN: the encoder never emits one). At a node the row goes left
//! when `x[feature] <= threshold` (NaN goes right). Scoring walks a complete-tree layout
//! compiled on first use, 8 trees side by side without data-dependent branches; leaf values
//! are added in tree order, bit-identical to the plain walk. For the default model (60 trees ×
//! 15 leaves) that is ≈ 0.4 µs of the tree family's 2.05 µs (docs/MODELS.md).

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::ModelError;

/// One node of a tree. A leaf has `feature == LEAF`; its value is in `value`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Node {
    /// Split feature, or [`LEAF`].
    pub feature: u32,
    /// Go left when `x[feature] <= threshold`.
    pub threshold: f32,
    /// Leaf value (margin contribution; learning rate applied).
    pub value: f32,
    /// Left child index within the tree.
    pub left: u32,
    /// Right child index within the tree.
    pub right: u32,
}

/// Marks a leaf.
pub const LEAF: u32 = u32::MAX;

/// Trees walked in lockstep by [`Ensemble::margin`].
const LANES: usize = 8;

/// A tree ensemble: margin = `base` + Σ trees.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ensemble {
    /// Initial margin (log-odds of the training positive rate).
    pub base: f64,
    /// Number of input features.
    pub n_features: u32,
    /// Nodes of every tree, concatenated; `roots[t]` is tree `t`'s first node.
    pub nodes: Vec<Node>,
    /// Start of each tree in `nodes`.
    pub roots: Vec<u32>,
    /// Scoring layout derived from `nodes` and `roots` on first use (never serialized).
    #[serde(skip)]
    compiled: CompiledCache,
}

/// Deepest tree [`Ensemble::margin`] compiles into the complete layout (`2^depth` leaves);
/// deeper ensembles use the lockstep walk.
const MAX_COMPILED_DEPTH: u32 = 8;

/// Trees of the complete layout walked side by side.
const GROUP: usize = 8;

/// Columns a compiled row holds (split features are stored as `u8`).
const COMPILED_WIDTH: usize = 256;

/// Most trees [`Ensemble::margin`] compiles (their values wait in a stack array).
const MAX_COMPILED_TREES: usize = 512;

/// Entries of a compiled tree: `2^MAX_COMPILED_DEPTH` (splits use all but one).
const SLOTS: usize = 1 << MAX_COMPILED_DEPTH;

/// [`GROUP`] trees of about the same depth, each padded to the group's depth (a last group
/// with fewer trees is filled with always-right dummies whose leaves are never read). Fixed-size
/// tables, so that every index of the walk is in bounds by construction (`& (SLOTS − 1)`).
#[derive(Clone, Debug)]
struct CompiledGroup {
    depth: u32,
    /// Real trees in the group.
    n: usize,
    /// Tree index (position in `roots`) of each lane.
    tree: [u16; GROUP],
    /// `splits[j][lane]` = `(feature, threshold)` of entry `j` (heap order: the children
    /// of `j` are `2j + 1` (left) and `2j + 2` (right)).
    splits: Box<[[(u8, f32); GROUP]; SLOTS]>,
    /// `leaves[k][lane]`: the value of bottom entry `2^depth − 1 + k`.
    leaves: Box<[[f32; GROUP]; SLOTS]>,
}

/// Every tree padded to a complete binary tree of its group's depth: a leaf above the
/// bottom becomes splits with a NaN threshold (`v <= NaN` is false for every `v`, so they
/// always go right) down to a copy of itself. A walk is then exactly `depth` steps with no
/// data-dependent branch, the trees of a group side by side, and the row reaches the same
/// leaf as in the node array.
#[derive(Clone, Debug, Default)]
struct Compiled {
    n_nodes: usize,
    n_trees: usize,
    groups: Vec<CompiledGroup>,
}

impl Compiled {
    /// `None` when a tree is deeper than [`MAX_COMPILED_DEPTH`], splits on a feature past
    /// [`COMPILED_WIDTH`] or leaves the node array.
    fn build(e: &Ensemble) -> Option<Compiled> {
        let mut c = Compiled {
            n_nodes: e.nodes.len(),
            n_trees: e.roots.len(),
            groups: Vec::with_capacity(e.roots.len().div_ceil(GROUP)),
        };
        if e.roots.len() > MAX_COMPILED_TREES {
            return None;
        }
        // Trees grouped by depth (little padding); their values are still added in tree
        // order.
        let mut order: Vec<(u32, usize)> = Vec::with_capacity(e.roots.len());
        for (t, &root) in e.roots.iter().enumerate() {
            order.push((depth_of(e, root as usize, 0, 0)?, t));
        }
        order.sort_unstable();
        for members in order.chunks(GROUP) {
            let depth = members.iter().map(|m| m.0).max().unwrap_or(0);
            let group: Vec<u32> = members
                .iter()
                .map(|m| e.roots.get(m.1).copied())
                .collect::<Option<_>>()?;
            let mut tree = [0u16; GROUP];
            for (slot, m) in tree.iter_mut().zip(members) {
                *slot = u16::try_from(m.1).ok()?;
            }
            let internal = (1usize << depth) - 1;
            let mut g = CompiledGroup {
                depth,
                n: group.len(),
                tree,
                splits: Box::new([[(0, f32::NAN); GROUP]; SLOTS]),
                leaves: Box::new([[0.0; GROUP]; SLOTS]),
            };
            let mut splits = vec![(0u32, f32::NAN); internal];
            let mut leaves = vec![0.0f32; internal + 1];
            for (lane, &root) in group.iter().enumerate() {
                splits.fill((0, f32::NAN));
                leaves.fill(0.0);
                Filler {
                    e,
                    root: root as usize,
                    depth,
                    splits: &mut splits,
                    leaves: &mut leaves,
                }
                .fill(0, 0, 0)?;
                for (j, &(f, thr)) in splits.iter().enumerate() {
                    *g.splits.get_mut(j)?.get_mut(lane)? = (u8::try_from(f).ok()?, thr);
                }
                for (k, &v) in leaves.iter().enumerate() {
                    *g.leaves.get_mut(k)?.get_mut(lane)? = v;
                }
            }
            c.groups.push(g);
        }
        Some(c)
    }

    /// Σ leaf values in tree order; columns past the row read 0.
    #[inline]
    fn margin(&self, x: &[f32]) -> f32 {
        let mut row = [0.0f32; COMPILED_WIDTH];
        let n = x.len().min(COMPILED_WIDTH);
        row[..n].copy_from_slice(&x[..n]);
        let mut value = [0.0f32; MAX_COMPILED_TREES];
        for g in &self.groups {
            let mut j = [0usize; GROUP];
            for _ in 0..g.depth {
                for (l, jl) in j.iter_mut().enumerate() {
                    let (f, thr) = g.splits[*jl & (SLOTS - 1)][l];
                    let v = row[usize::from(f)];
                    // Left (`2j + 1`) iff `v <= thr`; NaN on either side goes right.
                    *jl = 2 * *jl + 2 - usize::from(v <= thr);
                }
            }
            let internal = (1usize << g.depth) - 1;
            for (l, &jl) in j.iter().enumerate().take(g.n) {
                if let Some(v) = value.get_mut(usize::from(g.tree[l])) {
                    *v = g.leaves[jl.wrapping_sub(internal) & (SLOTS - 1)][l];
                }
            }
        }
        let mut z = 0.0f32;
        for &v in value.iter().take(self.n_trees) {
            z += v;
        }
        z
    }
}

/// Depth of the subtree at `root + k` (a leaf has depth 0).
fn depth_of(e: &Ensemble, root: usize, k: usize, level: u32) -> Option<u32> {
    if level > MAX_COMPILED_DEPTH {
        return None;
    }
    let n = e.nodes.get(root + k)?;
    if n.feature == LEAF {
        return Some(0);
    }
    let l = depth_of(e, root, n.left as usize, level + 1)?;
    let r = depth_of(e, root, n.right as usize, level + 1)?;
    let d = 1 + l.max(r);
    (level + d <= MAX_COMPILED_DEPTH).then_some(d)
}

/// Writes one tree into its complete layout.
struct Filler<'a> {
    e: &'a Ensemble,
    root: usize,
    depth: u32,
    splits: &'a mut [(u32, f32)],
    leaves: &'a mut [f32],
}

impl Filler<'_> {
    /// Writes the subtree at `root + k` into entry `j` (at `level`).
    fn fill(&mut self, k: usize, j: usize, level: u32) -> Option<()> {
        let n = *self.e.nodes.get(self.root + k)?;
        let internal = (1usize << self.depth) - 1;
        if level == self.depth {
            if n.feature != LEAF {
                return None;
            }
            *self.leaves.get_mut(j.checked_sub(internal)?)? = n.value;
            return Some(());
        }
        if n.feature == LEAF {
            // Always right (NaN threshold), down to the bottom.
            *self.splits.get_mut(j)? = (0, f32::NAN);
            return self.fill(k, 2 * j + 2, level + 1);
        }
        *self.splits.get_mut(j)? = (n.feature, n.threshold);
        self.fill(n.left as usize, 2 * j + 1, level + 1)?;
        self.fill(n.right as usize, 2 * j + 2, level + 1)
    }
}

/// The lazily built [`Compiled`] layout (`None` inside: not compilable). A pure function of
/// the ensemble's other fields, so it takes no part in equality.
#[derive(Clone, Default)]
struct CompiledCache(OnceLock<Option<Compiled>>);

impl PartialEq for CompiledCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for CompiledCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0.get() {
            None => "CompiledCache(pending)",
            Some(None) => "CompiledCache(not compilable)",
            Some(Some(_)) => "CompiledCache(built)",
        })
    }
}

impl Ensemble {
    /// The raw margin of a dense row.
    ///
    /// Walks the complete-tree layout built on first use (`depth` steps per tree, no
    /// data-dependent branch, so the CPU overlaps consecutive trees) — or, for an ensemble
    /// it cannot hold, [`LANES`] trees in lockstep on the node array — and adds the leaf
    /// values in tree order, so the result is bit-identical to the one-tree-at-a-time walk
    /// ([`Ensemble::margin_sequential`]; tested).
    #[inline]
    pub fn margin(&self, x: &[f32]) -> f64 {
        if let Some(c) = self.compiled.0.get_or_init(|| Compiled::build(self)) {
            // Unless `nodes` / `roots` were edited after the layout was built.
            if c.n_nodes == self.nodes.len() && c.n_trees == self.roots.len() {
                return self.base + f64::from(c.margin(x));
            }
        }
        self.margin_lockstep(x)
    }

    /// [`Ensemble::margin`] on the node array: [`LANES`] trees in lockstep.
    fn margin_lockstep(&self, x: &[f32]) -> f64 {
        let nodes = self.nodes.as_slice();
        let mut z = 0.0f32;
        for group in self.roots.chunks(LANES) {
            // Absolute node index per lane; `usize::MAX` once a lane left the node array.
            let mut at = [usize::MAX; LANES];
            for (a, &r) in at.iter_mut().zip(group) {
                *a = r as usize;
            }
            loop {
                let mut moved = false;
                for (a, &r) in at.iter_mut().zip(group) {
                    let Some(n) = nodes.get(*a) else {
                        *a = usize::MAX;
                        continue;
                    };
                    let leaf = n.feature == LEAF;
                    // A leaf reads column 0 (ignored) rather than branching on `leaf`.
                    let f = if leaf { 0 } else { n.feature as usize };
                    let v = x.get(f).copied().unwrap_or(0.0);
                    let child = if v <= n.threshold { n.left } else { n.right };
                    let next = r as usize + child as usize;
                    *a = if leaf { *a } else { next };
                    moved |= !leaf;
                }
                if !moved {
                    break;
                }
            }
            for &a in &at[..group.len()] {
                if let Some(n) = nodes.get(a) {
                    z += n.value;
                }
            }
        }
        self.base + f64::from(z)
    }

    /// The straightforward walk, one tree after the other: the reference
    /// [`Ensemble::margin`] must agree with bit for bit.
    pub fn margin_sequential(&self, x: &[f32]) -> f64 {
        let mut z = 0.0f32;
        for &root in &self.roots {
            let mut k = root as usize;
            while let Some(n) = self.nodes.get(k) {
                if n.feature == LEAF {
                    z += n.value;
                    break;
                }
                let v = x.get(n.feature as usize).copied().unwrap_or(0.0);
                k = root as usize + if v <= n.threshold { n.left } else { n.right } as usize;
            }
        }
        self.base + f64::from(z)
    }

    /// The first `rounds` trees only.
    pub fn truncated(&self, rounds: usize) -> Ensemble {
        let rounds = rounds.min(self.roots.len());
        let end = self
            .roots
            .get(rounds)
            .map_or(self.nodes.len(), |&r| r as usize);
        Ensemble {
            base: self.base,
            n_features: self.n_features,
            nodes: self.nodes[..end].to_vec(),
            roots: self.roots[..rounds].to_vec(),
            compiled: CompiledCache::default(),
        }
    }

    /// Structural checks (after loading a file).
    pub fn validate(&self) -> Result<(), String> {
        if !self.base.is_finite() {
            return Err("tree ensemble base is not finite".into());
        }
        for (t, &root) in self.roots.iter().enumerate() {
            let end = self
                .roots
                .get(t + 1)
                .map_or(self.nodes.len(), |&r| r as usize);
            let root = root as usize;
            if root >= end || end > self.nodes.len() {
                return Err(format!("tree {t} has an invalid node range"));
            }
            for (k, n) in self.nodes[root..end].iter().enumerate() {
                if n.feature == LEAF {
                    if !n.value.is_finite() {
                        return Err(format!("tree {t} has a non-finite leaf"));
                    }
                    continue;
                }
                let ok = n.feature < self.n_features
                    && n.threshold.is_finite()
                    && (n.left as usize) > k
                    && (n.right as usize) > k
                    && (n.left as usize) < end - root
                    && (n.right as usize) < end - root;
                if !ok {
                    return Err(format!("tree {t} node {k} is invalid"));
                }
            }
        }
        Ok(())
    }
}

/// Learner settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct GbdtParams {
    pub rounds: usize,
    pub learning_rate: f64,
    pub max_leaves: usize,
    pub max_depth: usize,
    pub min_leaf: usize,
    pub min_hessian: f64,
    pub lambda: f64,
    pub subsample: f64,
    pub feature_fraction: f64,
    pub max_bins: usize,
    pub seed: u64,
}

/// Quantile bins of a dense row-major matrix, column-major `u8` codes.
pub(crate) struct Binned {
    pub n: usize,
    pub d: usize,
    /// `cuts[f][b]`: upper edge (inclusive) of bin `b`; the last bin is open.
    pub cuts: Vec<Vec<f32>>,
    /// `codes[f * n + i]`.
    pub codes: Vec<u8>,
}

impl Binned {
    pub fn new(x: &[f32], n: usize, d: usize, max_bins: usize) -> Binned {
        let max_bins = max_bins.clamp(2, 256);
        let mut cuts = Vec::with_capacity(d);
        let mut codes = vec![0u8; n * d];
        let mut col: Vec<f32> = Vec::with_capacity(n);
        for f in 0..d {
            col.clear();
            col.extend((0..n).map(|i| x[i * d + f]));
            let mut sorted = col.clone();
            sorted.sort_by(f32::total_cmp);
            sorted.dedup();
            let c: Vec<f32> = if sorted.len() <= max_bins {
                sorted
                    .windows(2)
                    .map(|w| w[0] + (w[1] - w[0]) / 2.0)
                    .collect()
            } else {
                // Quantiles of the full column (with repeats), deduplicated.
                let mut all = col.clone();
                all.sort_by(f32::total_cmp);
                let mut c: Vec<f32> = (1..max_bins)
                    .map(|q| all[(q * n / max_bins).min(n - 1)])
                    .collect();
                c.dedup();
                // A cut equal to the maximum would leave the last bin empty.
                if c.last() == all.last() {
                    c.pop();
                }
                c
            };
            for (i, &v) in col.iter().enumerate() {
                codes[f * n + i] = c.partition_point(|&t| t < v) as u8;
            }
            cuts.push(c);
        }
        Binned { n, d, cuts, codes }
    }
}

#[derive(Clone, Copy, Default)]
struct Bin {
    g: f64,
    h: f64,
    n: u32,
}

struct Split {
    gain: f64,
    feature: usize,
    bin: usize,
}

struct Leaf {
    rows: Vec<u32>,
    hist: Vec<Bin>,
    g: f64,
    h: f64,
    depth: usize,
    node: usize,
    best: Option<Split>,
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// Training state over one binned matrix.
pub(crate) struct Trainer<'a> {
    b: &'a Binned,
    p: GbdtParams,
    width: usize,
}

impl<'a> Trainer<'a> {
    pub fn new(b: &'a Binned, p: GbdtParams) -> Self {
        let width = b.cuts.iter().map(|c| c.len() + 1).max().unwrap_or(1);
        Trainer { b, p, width }
    }

    fn hist(&self, rows: &[u32], g: &[f64], h: &[f64], feats: &[usize], out: &mut [Bin]) {
        out.iter_mut().for_each(|x| *x = Bin::default());
        let n = self.b.n;
        for &f in feats {
            let codes = &self.b.codes[f * n..(f + 1) * n];
            let hf = &mut out[f * self.width..(f + 1) * self.width];
            for &r in rows {
                let r = r as usize;
                let bin = &mut hf[codes[r] as usize];
                bin.g += g[r];
                bin.h += h[r];
                bin.n += 1;
            }
        }
    }

    fn best_split(&self, leaf: &Leaf, feats: &[usize]) -> Option<Split> {
        let p = &self.p;
        let parent = leaf.g * leaf.g / (leaf.h + p.lambda);
        let total_n = leaf.rows.len() as u32;
        let mut best: Option<Split> = None;
        for &f in feats {
            let nb = self.b.cuts[f].len() + 1;
            if nb < 2 {
                continue;
            }
            let hf = &leaf.hist[f * self.width..f * self.width + nb];
            let (mut gl, mut hl, mut nl) = (0.0, 0.0, 0u32);
            for (bin, x) in hf.iter().enumerate().take(nb - 1) {
                gl += x.g;
                hl += x.h;
                nl += x.n;
                let nr = total_n - nl;
                if (nl as usize) < p.min_leaf || (nr as usize) < p.min_leaf {
                    continue;
                }
                let (gr, hr) = (leaf.g - gl, leaf.h - hl);
                if hl < p.min_hessian || hr < p.min_hessian {
                    continue;
                }
                let gain = gl * gl / (hl + p.lambda) + gr * gr / (hr + p.lambda) - parent;
                if gain > 1e-9 && best.as_ref().is_none_or(|b| gain > b.gain) {
                    best = Some(Split {
                        gain,
                        feature: f,
                        bin,
                    });
                }
            }
        }
        best
    }

    /// Grows one tree on gradients `g`, hessians `h` over `rows`; returns its nodes.
    fn tree(&self, rows: Vec<u32>, g: &[f64], h: &[f64], feats: &[usize]) -> Vec<Node> {
        let p = &self.p;
        let leaf_node = Node {
            feature: LEAF,
            threshold: 0.0,
            value: 0.0,
            left: 0,
            right: 0,
        };
        let mut nodes = vec![leaf_node];
        let mut hist = vec![Bin::default(); self.b.d * self.width];
        self.hist(&rows, g, h, feats, &mut hist);
        let (sg, sh) = rows.iter().fold((0.0, 0.0), |(a, b), &r| {
            (a + g[r as usize], b + h[r as usize])
        });
        let mut root = Leaf {
            rows,
            hist,
            g: sg,
            h: sh,
            depth: 0,
            node: 0,
            best: None,
        };
        root.best = self.best_split(&root, feats);
        let mut leaves = vec![root];
        while leaves.len() < p.max_leaves {
            // Best-first: the open leaf with the largest gain.
            let Some((k, _)) = leaves
                .iter()
                .enumerate()
                .filter(|(_, l)| l.depth < p.max_depth && l.best.is_some())
                .max_by(|a, b| {
                    let ga = a.1.best.as_ref().map_or(0.0, |s| s.gain);
                    let gb = b.1.best.as_ref().map_or(0.0, |s| s.gain);
                    ga.total_cmp(&gb)
                })
            else {
                break;
            };
            let leaf = leaves.swap_remove(k);
            let Some(split) = leaf.best.as_ref() else {
                break;
            };
            let (f, bin) = (split.feature, split.bin);
            let codes = &self.b.codes[f * self.b.n..(f + 1) * self.b.n];
            let (lrows, rrows): (Vec<u32>, Vec<u32>) = leaf
                .rows
                .iter()
                .partition(|&&r| (codes[r as usize] as usize) <= bin);
            let (small, large, small_is_left) = if lrows.len() <= rrows.len() {
                (lrows, rrows, true)
            } else {
                (rrows, lrows, false)
            };
            let mut hs = vec![Bin::default(); self.b.d * self.width];
            self.hist(&small, g, h, feats, &mut hs);
            let mut hl = leaf.hist;
            for (a, s) in hl.iter_mut().zip(&hs) {
                a.g -= s.g;
                a.h -= s.h;
                a.n -= s.n;
            }
            let sum = |rows: &[u32]| {
                rows.iter().fold((0.0, 0.0), |(a, b), &r| {
                    (a + g[r as usize], b + h[r as usize])
                })
            };
            let (gs, hs_sum) = sum(&small);
            let li = nodes.len();
            nodes.push(leaf_node);
            nodes.push(leaf_node);
            nodes[leaf.node] = Node {
                feature: f as u32,
                threshold: self.b.cuts[f][bin],
                value: 0.0,
                left: li as u32,
                right: li as u32 + 1,
            };
            let (small_node, large_node) = if small_is_left {
                (li, li + 1)
            } else {
                (li + 1, li)
            };
            let mut a = Leaf {
                rows: small,
                hist: hs,
                g: gs,
                h: hs_sum,
                depth: leaf.depth + 1,
                node: small_node,
                best: None,
            };
            let mut b = Leaf {
                rows: large,
                hist: hl,
                g: leaf.g - gs,
                h: leaf.h - hs_sum,
                depth: leaf.depth + 1,
                node: large_node,
                best: None,
            };
            a.best = self.best_split(&a, feats);
            b.best = self.best_split(&b, feats);
            leaves.push(a);
            leaves.push(b);
        }
        for l in &leaves {
            let v = -l.g / (l.h + p.lambda) * p.learning_rate;
            nodes[l.node].value = v as f32;
        }
        nodes
    }

    /// Boosts `rounds` trees (evaluate fewer with [`Ensemble::truncated`]).
    pub fn fit(&self, y: &[bool]) -> Result<Ensemble, ModelError> {
        let n = self.b.n;
        let pos = y.iter().filter(|&&v| v).count();
        if n == 0 || pos == 0 || pos == n || y.len() != n {
            return Err(ModelError::NotEnoughData(format!(
                "{n} tree training rows ({pos} positive): need both outcomes"
            )));
        }
        let rate = pos as f64 / n as f64;
        let base = (rate / (1.0 - rate)).ln();
        let mut f = vec![base; n];
        let mut g = vec![0.0; n];
        let mut h = vec![0.0; n];
        let mut ens = Ensemble {
            base,
            n_features: self.b.d as u32,
            nodes: Vec::new(),
            roots: Vec::new(),
            compiled: CompiledCache::default(),
        };
        let mut seed = self.p.seed | 1;
        let all_feats: Vec<usize> = (0..self.b.d).collect();
        for _ in 0..self.p.rounds {
            for i in 0..n {
                let pr = crate::model::sigmoid(f[i]);
                g[i] = pr - if y[i] { 1.0 } else { 0.0 };
                h[i] = (pr * (1.0 - pr)).max(1e-12);
            }
            let rows: Vec<u32> = if self.p.subsample < 1.0 {
                let cut = (self.p.subsample * u32::MAX as f64) as u64;
                (0..n as u32)
                    .filter(|_| (xorshift(&mut seed) & 0xffff_ffff) < cut)
                    .collect()
            } else {
                (0..n as u32).collect()
            };
            let feats: Vec<usize> = if self.p.feature_fraction < 1.0 {
                let cut = (self.p.feature_fraction * u32::MAX as f64) as u64;
                let v: Vec<usize> = all_feats
                    .iter()
                    .copied()
                    .filter(|_| (xorshift(&mut seed) & 0xffff_ffff) < cut)
                    .collect();
                if v.is_empty() {
                    all_feats.clone()
                } else {
                    v
                }
            } else {
                all_feats.clone()
            };
            let nodes = self.tree(rows, &g, &h, &feats);
            // Update all rows' margins by walking the new tree on the bins.
            for (i, fi) in f.iter_mut().enumerate() {
                let mut k = 0usize;
                loop {
                    let nd = nodes[k];
                    if nd.feature == LEAF {
                        *fi += f64::from(nd.value);
                        break;
                    }
                    let code = self.b.codes[nd.feature as usize * n + i] as usize;
                    let cut = &self.b.cuts[nd.feature as usize];
                    // Left iff x <= threshold iff code <= index of the threshold.
                    let t = cut.partition_point(|&c| c < nd.threshold);
                    k = if code <= t { nd.left } else { nd.right } as usize;
                }
            }
            ens.roots.push(ens.nodes.len() as u32);
            ens.nodes.extend(nodes);
        }
        Ok(ens)
    }
}

/// Margins of every row after every `every` trees (and after the last): `(rounds, margins)`.
pub(crate) fn staged_margins(
    e: &Ensemble,
    x: &[f32],
    d: usize,
    every: usize,
) -> Vec<(usize, Vec<f64>)> {
    let rows: Vec<&[f32]> = x.chunks_exact(d.max(1)).collect();
    let mut z = vec![0.0f32; rows.len()];
    let mut out = Vec::new();
    let t_total = e.roots.len();
    for (t, &root) in e.roots.iter().enumerate() {
        for (zi, r) in z.iter_mut().zip(&rows) {
            let mut k = root as usize;
            while let Some(n) = e.nodes.get(k) {
                if n.feature == LEAF {
                    *zi += n.value;
                    break;
                }
                let v = r.get(n.feature as usize).copied().unwrap_or(0.0);
                k = root as usize + if v <= n.threshold { n.left } else { n.right } as usize;
            }
        }
        if (t + 1) % every.max(1) == 0 || t + 1 == t_total {
            out.push((t + 1, z.iter().map(|&v| e.base + f64::from(v)).collect()));
        }
    }
    out
}

/// Margins of every row of a dense row-major matrix.
pub(crate) fn margins(e: &Ensemble, x: &[f32], d: usize) -> Vec<f64> {
    x.chunks_exact(d.max(1)).map(|r| e.margin(r)).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::metrics::auc_roc;

    fn params() -> GbdtParams {
        GbdtParams {
            rounds: 60,
            learning_rate: 0.1,
            max_leaves: 8,
            max_depth: 4,
            min_leaf: 5,
            min_hessian: 1e-3,
            lambda: 1.0,
            subsample: 0.9,
            feature_fraction: 1.0,
            max_bins: 32,
            seed: 7,
        }
    }

    #[test]
    fn learns_an_interaction_a_linear_model_cannot() {
        // y = (x0 > 0.5) XOR (x1 > 0.5), x2 noise.
        let n = 2000;
        let mut s = 12345u64;
        let mut x = Vec::new();
        let mut y = Vec::new();
        for _ in 0..n {
            let a = (xorshift(&mut s) % 1000) as f32 / 1000.0;
            let b = (xorshift(&mut s) % 1000) as f32 / 1000.0;
            let c = (xorshift(&mut s) % 1000) as f32 / 1000.0;
            x.extend([a, b, c]);
            y.push((a > 0.5) ^ (b > 0.5));
        }
        let b = Binned::new(&x, n, 3, 32);
        let e = Trainer::new(&b, params()).fit(&y).unwrap();
        e.validate().unwrap();
        let m = margins(&e, &x, 3);
        assert!(auc_roc(&m, &y).unwrap() > 0.97);
        // Margins computed during training (on bins) equal those of the float path: check
        // that truncation keeps a prefix with a lower fit.
        let m10 = margins(&e.truncated(10), &x, 3);
        assert!(auc_roc(&m10, &y).unwrap() <= auc_roc(&m, &y).unwrap() + 1e-9);
        assert_eq!(e.truncated(10).roots.len(), 10);
    }

    #[test]
    fn compiled_and_lockstep_walks_agree_bit_for_bit_with_the_sequential_one() {
        let n = 3000;
        let d = 6;
        let mut s = 99u64;
        let mut x = Vec::new();
        let mut y = Vec::new();
        for _ in 0..n {
            let r: Vec<f32> = (0..d)
                .map(|_| (xorshift(&mut s) % 1000) as f32 / 1000.0)
                .collect();
            y.push((r[0] > 0.5) ^ (r[1] > 0.3) ^ (r[2] * r[3] > 0.2));
            x.extend(r);
        }
        let b = Binned::new(&x, n, d, 64);
        // Shallow, the default shape, and deeper than the compiled layout holds.
        let mut compiled = 0;
        for (leaves, depth) in [(4, 2), (15, 8), (31, 8), (63, 14)] {
            let p = GbdtParams {
                max_leaves: leaves,
                max_depth: depth,
                min_leaf: 3,
                ..params()
            };
            let e = Trainer::new(&b, p).fit(&y).unwrap();
            e.validate().unwrap();
            compiled += usize::from(Compiled::build(&e).is_some());
            let mut rows: Vec<Vec<f32>> = x.chunks(d).take(500).map(<[f32]>::to_vec).collect();
            // NaN goes right, missing columns read 0, infinities compare as usual.
            rows.push(vec![f32::NAN; d]);
            rows.push(vec![
                f32::INFINITY,
                f32::NEG_INFINITY,
                f32::NAN,
                0.5,
                -0.0,
                1e30,
            ]);
            rows.push(vec![0.7, 0.1]);
            rows.push(Vec::new());
            for r in &rows {
                let want = e.margin_sequential(r).to_bits();
                assert_eq!(e.margin(r).to_bits(), want, "{leaves} leaves");
                assert_eq!(e.margin_lockstep(r).to_bits(), want, "{leaves} leaves");
            }
        }
        assert!(compiled >= 3, "the depth-8 shapes compile");
        // A tree whose child points past the node array: not compiled, and every walk stops
        // there without a value.
        let broken = Ensemble {
            base: 0.25,
            n_features: 1,
            nodes: vec![
                Node {
                    feature: 0,
                    threshold: 0.5,
                    value: 0.0,
                    left: 1,
                    right: 7,
                },
                Node {
                    feature: LEAF,
                    threshold: 0.0,
                    value: 1.5,
                    left: 0,
                    right: 0,
                },
            ],
            roots: vec![0],
            compiled: CompiledCache::default(),
        };
        assert!(Compiled::build(&broken).is_none());
        for v in [0.0f32, 1.0] {
            assert_eq!(
                broken.margin(&[v]).to_bits(),
                broken.margin_sequential(&[v]).to_bits()
            );
        }
    }
}

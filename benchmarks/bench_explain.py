"""Faithfulness of the word-level explanations (issue 25): an ERASER-style comprehensiveness deletion test of
fastai v1's intrinsic attention and of integrated gradients, on held-out IMDb test reviews, with a saved classifier.

  python benchmarks/bench_explain.py /work/runs/smoke/classifier          # 500 test reviews, k = 5, 10, 20, 3 seeds
  python benchmarks/bench_explain.py MODEL_DIR --n 500 --steps 32 --seeds 0 1 2 --out benchmarks/RESULTS_explain.md
  python benchmarks/bench_explain.py small        # trains the small classifier of tests/test_interpret.py first (~20 s)

`small`: a one-layer AWD-LSTM (32/64) trained from scratch for 8 epochs on 800 IMDb train reviews (seed 3, vocab
2,000, max_len 300), exactly as `tests/test_interpret.py`'s fixture, saved to a temporary folder and loaded back.

What it does: `load_classifier(MODEL_DIR)`; `--n` IMDb *test* reviews (balanced, `imdb_sample(..., seed=--sample-seed)`:
the `ulmfit-imdb` job trains on `train` only, so none of them was trained on; some may be among the job's 1,000
validation reviews, which only scored it). Each review is explained with `explain(clf, texts, method)` for the
predicted class. For each k, the k top-scored tokens of each review (intrinsic attention: by magnitude; integrated
gradients: by signed score, the tokens pushing toward the predicted class) are *removed from the token list* (not
replaced by padding), and the drop of the predicted class's probability is averaged over the reviews; the same with
k tokens drawn uniformly at random from the same candidates (the scored window, `xxbos` excluded), one draw per
review and seed, averaged over seeds. Ratio = method drop / random drop. For integrated gradients (baseline: zero
embeddings, `--steps` midpoint-rule steps), completeness: each review's gap = sum of its scores - (F(text) -
F(baseline)), F the predicted class's probability. Timings are wall seconds on whatever cores the machine had (they
are stated with the load average; ratios of drops do not depend on them).
"""
import argparse, datetime, json, os, platform, time
from pathlib import Path
import numpy as np


def _machine():
    import torch
    return (f'{platform.platform()}, {os.cpu_count()} cores, python {platform.python_version()}, torch {torch.__version__}, '
            f'{torch.get_num_threads()} torch threads, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC')


def train_small(folder):
    "The small real classifier of the tests: 800 IMDb train reviews, a 32/64/1 AWD-LSTM from scratch, 8 epochs"
    import torch
    from ulmfit_lib.data import get_imdb, imdb_sample
    from ulmfit_lib.tokenize import WordTokenizer
    from ulmfit_lib.corpus import tokenize_corpus
    from ulmfit_lib.numericalize import corpus_vocab
    from ulmfit_lib.clas_data import clas_dls_from_corpus
    from ulmfit_lib.awd_lstm import AWD_LSTM
    from ulmfit_lib.learner import text_classifier_learner
    from ulmfit_lib.inference import save_classifier
    path = get_imdb()
    s = imdb_sample(path, n_train=800, n_valid=100, seed=3)
    trn = tokenize_corpus(s.train, path=path, progress=False, n_workers=0)
    val = tokenize_corpus(s.valid, path=path, progress=False, n_workers=0)
    vocab = corpus_vocab(trn, min_freq=3, max_vocab=2000)
    dls = clas_dls_from_corpus(trn, val, vocab, bs=32, seq_len=72)
    torch.manual_seed(0)
    learn = text_classifier_learner(dls, AWD_LSTM, seq_len=72, max_len=300, config=dict(emb_sz=32, n_hid=64, n_layers=1),
                                    pretrained=False, drop_mult=0.2, path=folder)
    learn.unfreeze()
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(8, 1e-2)
    return save_classifier(learn, Path(folder)/'small_classifier', classes=['neg', 'pos'], tok=WordTokenizer())


def run(model_dir, n=500, steps=32, ks=(5, 10, 20), seeds=(0, 1, 2), sample_seed=0, bs=16, baseline='zeros'):
    from ulmfit_lib.data import get_imdb, imdb_sample
    from ulmfit_lib.basics import read_text
    from ulmfit_lib.inference import load_classifier
    from ulmfit_lib.interpret import explain, comprehensiveness, METHODS
    clf = load_classifier(model_dir, n_workers=1)
    files = imdb_sample(get_imdb(), n_train=2, n_valid=n, seed=sample_seed).valid
    texts, labels = [read_text(f) for f in files], [f.parent.name for f in files]
    probs = clf.predict_proba(texts, progress=False)
    acc = float(np.mean([clf.classes[i] == y for i, y in zip(probs.argmax(1), labels)]))
    res = dict(baseline=baseline, model_dir=str(model_dir) if Path(model_dir).name != 'small_classifier' else 'small', n=n, steps=steps, ks=list(ks), seeds=list(seeds), accuracy=acc, machine=_machine(),
               load_before=os.getloadavg(), n_tokens=float(np.mean([len(d) for d in clf.numericalize(texts)])), methods={})
    for m in METHODS:
        t = time.time()
        ex = explain(clf, texts, method=m, n_steps=steps, bs=bs, baseline=baseline)
        secs = time.time() - t
        r = dict(seconds=secs, comp={str(k): v for k, v in comprehensiveness(clf, ex, ks=ks, seeds=seeds).items()})
        if m == 'ig':
            gaps, deltas = np.array([e.gap for e in ex]), np.array([e.delta for e in ex])
            rel = np.abs(gaps) / np.maximum(np.abs(deltas), 1e-6)
            r['completeness'] = dict(mean_abs_gap=float(np.abs(gaps).mean()), mean_abs_delta=float(np.abs(deltas).mean()),
                                     median_rel_gap=float(np.median(rel)), p90_rel_gap=float(np.percentile(rel, 90)),
                                     max_abs_gap=float(np.abs(gaps).max()))
        res['methods'][m] = r
        print(m, json.dumps(r, default=float), flush=True)
    res['load_after'] = os.getloadavg()
    return res


def report(res):
    names = {'attention': 'intrinsic attention (fastai v1)', 'ig': f'integrated gradients ({res["steps"]} steps, {res.get("baseline", "zeros")} baseline)'}
    lines = ['# Faithfulness of the explanations (issue 25)', '',
             f'`benchmarks/bench_explain.py {res["model_dir"]} --n {res["n"]} --steps {res["steps"]} --baseline {res.get("baseline", "zeros")}`: '
             f'{res["n"]} balanced IMDb test reviews (never trained on; {res["n_tokens"]:.0f} tokens on average), '
             f'the classifier\'s accuracy on them {100 * res["accuracy"]:.1f}%. Machine: {res["machine"]}; load average '
             f'{res["load_before"][0]:.1f} before, {res["load_after"][0]:.1f} after (shared cores: the seconds are not an idle-machine figure).', '',
             'Deletion test (ERASER comprehensiveness): remove the k top-scored tokens of each review from its token list and',
             'measure the drop of the predicted class\'s probability; the same for k random tokens of the same candidates',
             f'(seeds {", ".join(map(str, res["seeds"]))}, one draw per review and seed). Mean over the reviews; ratio = method / random.', '',
             '| method | k | drop, method | drop, random (per seed) | ratio | target (k = 10) |', '|---|---|---|---|---|---|']
    for m, r in res['methods'].items():
        for k, v in r['comp'].items():
            tgt = ('met' if v['ratio'] >= 2 else '**not met**') if k == '10' else ''
            lines.append(f'| {names[m]} | {k} | {v["method"]:.4f} | {v["random"]:.4f} ({", ".join(f"{x:.4f}" for x in v["random_seeds"])}) '
                         f'| **{v["ratio"]:.1f}x** | {tgt} |')
    c = res['methods']['ig']['completeness']
    lines += ['', f'Integrated gradients, completeness (sum of scores vs F(text) - F(baseline), F = predicted class probability): '
              f'mean |gap| {c["mean_abs_gap"]:.4f} for a mean |F(text) - F(baseline)| of {c["mean_abs_delta"]:.4f}; '
              f'relative gap median {100 * c["median_rel_gap"]:.2f}%, 90th percentile {100 * c["p90_rel_gap"]:.2f}%, largest |gap| {c["max_abs_gap"]:.4f}.', '',
              'Time to explain the reviews: ' + '; '.join(f'{names[m]} {r["seconds"]:.0f} s ({1000 * r["seconds"] / res["n"]:.0f} ms a review)'
                                                        for m, r in res['methods'].items()) + '.', '']
    return '\n'.join(lines)


if __name__ == '__main__':
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('model_dir')
    ap.add_argument('--n', type=int, default=500)
    ap.add_argument('--steps', type=int, default=32)
    ap.add_argument('--ks', type=int, nargs='+', default=[5, 10, 20])
    ap.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    ap.add_argument('--sample-seed', type=int, default=0)
    ap.add_argument('--baseline', default='zeros', choices=['zeros', 'pad'], help="integrated gradients' baseline embedding")
    ap.add_argument('--out', default=str(Path(__file__).parent/'RESULTS_explain.md'))
    ap.add_argument('--json', default=None, help='also write the raw numbers here')
    ap.add_argument('--threads', type=int, default=1, help='torch threads (one: the cores are shared)')
    a = ap.parse_args()
    import torch; torch.set_num_threads(a.threads)
    import tempfile
    tmp = tempfile.TemporaryDirectory()
    model_dir = train_small(tmp.name) if a.model_dir == 'small' else a.model_dir
    res = run(model_dir, a.n, a.steps, tuple(a.ks), tuple(a.seeds), a.sample_seed, baseline=a.baseline)
    from ulmfit_lib.basics import atomic_write
    atomic_write(a.out, lambda f: Path(f).write_text(report(res), encoding='utf-8'))
    if a.json: atomic_write(a.json, lambda f: Path(f).write_text(json.dumps(res, indent=1, default=float), encoding='utf-8'))
    print(report(res))

"""Batch inference: ulmfit_lib's `TextClassifier.predict_proba` vs fastai's `get_preds(dl=test_dl(texts))` and a
loop of fastai's `learn.predict`, side by side, with the same weights, on real IMDb test reviews.

  python benchmarks/bench_inference.py                       # 1,000 test reviews, 3 runs each, predict loop on 100
  python benchmarks/bench_inference.py --n 1000 --runs 3 --n-predict 100 --config smoke

Setup (once, in the parent): a vocab from 2,000 IMDb train reviews (our tokenizer, `corpus_vocab`, max 6,000 tokens)
and a classifier of the `smoke` profile's size (AWD-LSTM 128/384/2, seq_len 72, max_len 1440; `--config default`:
fastai's 400/1152/3) with random weights and random BatchNorm statistics, saved with `save_classifier`. Then
each method runs in its own fresh subprocess (so that peak memory is its own): it builds its model from that folder
(ours: `load_classifier`; fastai: `fastai.text.all.text_classifier_learner` on fastai's own `TextDataLoaders`
built with the same vocab, then `load_state_dict` of the same weights), reads the texts, notes its peak RSS
(`ru_maxrss`), then times `--runs` runs of the whole prediction (texts in, probabilities out: tokenization,
numericalization, batching and the model) and reports the median and the peak RSS growth over the timed runs.
The `learn.predict` loop is timed on the first `--n-predict` reviews (`--predict-runs` runs) and its per-review time
is multiplied by `n` (stated as such). The probabilities of the three methods are checked against each other.
A fourth row times our model part alone (`predict_proba_ids` on texts numericalized beforehand: batching and the model, no tokenization): no implementation
of this model can be faster than that on this machine, so `predict` loop / model part bounds any speed-up over it.
Ratios = fastai / ours, of medians. With `--rounds R` the whole set of methods runs R times, each round in
another order, and the medians are over all rounds: on shared cores the load changes within minutes, and a
method run only at a quiet or a busy moment would win or lose by that alone. Torch and the tokenizers use the 2 cores in every method.
"""
import argparse, datetime, json, os, platform, resource, statistics, subprocess, sys, tempfile, time
from pathlib import Path
import numpy as np


def _machine():
    import torch, fastai
    return (f'{platform.platform()}, {os.cpu_count()} cores, python {platform.python_version()}, torch {torch.__version__}, '
            f'fastai {fastai.__version__}, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC')


def _rss_mb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def setup(work, n, config, seed=0):
    "Texts, labels and a saved classifier (random weights) in `work`."
    import torch
    from ulmfit_lib.basics import read_text
    from ulmfit_lib.data import get_imdb, imdb_sample
    from ulmfit_lib.corpus import tokenize_corpus
    from ulmfit_lib.numericalize import corpus_vocab
    from ulmfit_lib.awd_lstm import AWD_LSTM
    from ulmfit_lib.learner import text_classifier_learner
    from ulmfit_lib.clas_data import clas_dls_from_corpus
    from ulmfit_lib.inference import save_classifier
    path = get_imdb()
    s = imdb_sample(path, n_train=2000, n_valid=n, seed=42)
    trn = tokenize_corpus(s.train, path=path, progress=False)
    vocab = corpus_vocab(trn, max_vocab=6000)
    dls = clas_dls_from_corpus(trn, trn, vocab, bs=64)
    cfg = dict(emb_sz=128, n_hid=384, n_layers=2) if config == 'smoke' else None
    learn = text_classifier_learner(dls, AWD_LSTM, config=cfg, pretrained=False)
    torch.manual_seed(seed)
    for m in learn.model.modules():
        if isinstance(m, torch.nn.BatchNorm1d): m.running_mean.normal_(); m.running_var.uniform_(0.5, 2)
    save_classifier(learn, work/'clf', classes=['neg', 'pos'])
    texts = [read_text(f) for f in s.valid]
    (work/'texts.json').write_text(json.dumps(texts))
    (work/'train.json').write_text(json.dumps([[read_text(f), f.parent.name] for f in s.train[:64]]))
    (work/'config.json').write_text(json.dumps(cfg))


def fastai_learner(work):
    "fastai's classifier on fastai's own DataLoaders with our vocab, holding our saved weights."
    import pandas as pd, torch
    import fastai.text.all as fa
    from ulmfit_lib.inference import load_classifier
    clf = load_classifier(work/'clf')
    df = pd.DataFrame(json.loads((work/'train.json').read_text()), columns=['text', 'label'])
    dls = fa.TextDataLoaders.from_df(df, text_col='text', label_col='label', text_vocab=clf.vocab, valid_pct=0.25, seed=0, bs=64)
    assert list(dls.vocab[1]) == clf.classes and list(dls.vocab[0]) == clf.vocab
    cfg = json.loads((work/'config.json').read_text())
    learn = fa.text_classifier_learner(dls, fa.AWD_LSTM, config=None if cfg is None else {**fa.awd_lstm_clas_config, **cfg},
                                       pretrained=False)
    learn.model.load_state_dict(clf.model.state_dict())
    learn.model.eval()
    return learn


def worker(work, method, runs, n_predict):
    "Run `method` `runs` times in this process; print a JSON line with times and peak RSS; save the probabilities."
    import torch
    texts = json.loads((work/'texts.json').read_text())
    if method in ('ours', 'ours_model_only'):
        from ulmfit_lib.inference import load_classifier
        clf = load_classifier(work/'clf')
        if method == 'ours': run = lambda: clf.predict_proba(texts, bs=64, progress=False)
        else:      # the floor: the same batches through the model, texts already numericalized
            docs = clf.numericalize(texts)
            run = lambda: clf.predict_proba_ids(docs, bs=64, progress=False)
    else:
        from fastcore.basics import first
        learn = fastai_learner(work)
        if method == 'fastai_get_preds':
            run = lambda: learn.get_preds(dl=learn.dls.test_dl(texts))[0].numpy()
        else:
            texts = texts[:n_predict]
            def run():
                with learn.no_bar(): return np.stack([learn.predict(t)[2].numpy() for t in texts])
    base = _rss_mb(); times = []
    for r in range(runs):
        t = time.perf_counter(); probs = run(); times.append(time.perf_counter() - t)
    np.save(work/f'{method}.npy', probs)
    print(json.dumps(dict(method=method, times=times, n=len(texts), rss_before_mb=base, rss_peak_mb=_rss_mb(),
                          load=os.getloadavg())))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--n', type=int, default=1000, help='IMDb test reviews')
    ap.add_argument('--runs', type=int, default=3, help='timed runs per method in each round')
    ap.add_argument('--rounds', type=int, default=1,
                    help='rounds of all methods, in a rotating order, so a change of load on shared cores hits every method')
    ap.add_argument('--n-predict', type=int, default=100, help='reviews for the learn.predict loop')
    ap.add_argument('--predict-runs', type=int, default=1, help='runs of the (slow) learn.predict loop')
    ap.add_argument('--config', default='smoke', choices=['smoke', 'default'])
    ap.add_argument('--worker', nargs=2, metavar=('WORKDIR', 'METHOD'), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker: return worker(Path(a.worker[0]), a.worker[1], a.runs, a.n_predict)
    work = Path(tempfile.mkdtemp(prefix='bench_inference_'))
    print(f'# {_machine()}, load {os.getloadavg()}')
    setup(work, a.n, a.config)
    texts = json.loads((work/'texts.json').read_text())
    res, methods = {}, ['ours', 'ours_model_only', 'fastai_get_preds', 'fastai_predict']
    for rnd in range(a.rounds):
        for method in methods[rnd % 4:] + methods[:rnd % 4]:
            runs = a.runs if method != 'fastai_predict' else a.predict_runs
            r = subprocess.run([sys.executable, __file__, '--worker', str(work), method, '--runs', str(runs), '--n-predict',
                                str(a.n_predict)], capture_output=True, text=True)
            if r.returncode: sys.exit(f'{method} failed:\n{r.stderr[-3000:]}')
            m = json.loads(r.stdout.strip().splitlines()[-1])
            print(f'round {rnd + 1}, {method}: runs {[round(t, 2) for t in m["times"]]} s on {m["n"]} reviews, peak RSS '
                  f'{m["rss_peak_mb"]:.0f} MB (+{m["rss_peak_mb"] - m["rss_before_mb"]:.0f} MB in the timed runs), '
                  f'load {[round(x, 1) for x in m["load"]]}', flush=True)
            if method not in res: res[method] = m
            else:      # times of every round; the largest peak and growth seen
                res[method]['times'] += m['times']
                if m['rss_peak_mb'] - m['rss_before_mb'] > res[method]['rss_peak_mb'] - res[method]['rss_before_mb']:
                    res[method].update(rss_peak_mb=m['rss_peak_mb'], rss_before_mb=m['rss_before_mb'])
    # agreement
    from ulmfit_lib.inference import load_classifier
    clf = load_classifier(work/'clf')
    lens = np.array([len(d) for d in clf.numericalize(texts)])
    short = lens <= clf.max_len - clf.seq_len + 1
    po, pg, pp, pm = (np.load(work/f'{k}.npy') for k in ('ours', 'fastai_get_preds', 'fastai_predict', 'ours_model_only'))
    assert np.array_equal(po, pm), 'predict_proba and predict_proba_ids disagree'
    d_g, d_p = np.abs(po - pg).max(1), np.abs(po[:len(pp)] - pp).max(1)
    print(f'# agreement: ours vs fastai `predict` (each review alone, {len(pp)} reviews): max |dp| {d_p.max():.2e}')
    print(f'# ours vs fastai `get_preds` (batched): max |dp| {d_g.max():.2e}; {(d_g > 1e-5).sum()} of {len(d_g)} reviews differ by '
          f'more than 1e-5 ({(d_g[~short] > 1e-5).sum()} of the {(~short).sum()} longer than {clf.max_len - clf.seq_len + 1} tokens); '
          f'same labels: {(po.argmax(1) == pg.argmax(1)).mean():.3f}')
    med = {k: statistics.median(v['times']) for k, v in res.items()}
    per = med['fastai_predict'] / res['fastai_predict']['n']
    n = res['ours']['n']
    print(f'\n| method ({n} IMDb test reviews, tokenization included) | median of {a.runs} x {a.rounds} rounds | peak RSS (growth in timed runs) | fastai / ours |')
    print('|---|---|---|---|')
    mem = lambda k: f'{res[k]["rss_peak_mb"]:.0f} MB (+{res[k]["rss_peak_mb"] - res[k]["rss_before_mb"]:.0f} MB)'
    print(f'| ulmfit_lib `predict_proba(texts, bs=64)` | {med["ours"]:.2f} s | {mem("ours")} | 1 |')
    print(f'| ... its model part alone (`predict_proba_ids` on numericalized texts: batching and the model) | '
          f'{med["ours_model_only"]:.2f} s | {mem("ours_model_only")} | ({med["ours_model_only"] / med["ours"]:.2f} of ours) |')
    print(f'| fastai `get_preds(dl=dls.test_dl(texts))` | {med["fastai_get_preds"]:.2f} s | {mem("fastai_get_preds")} | '
          f'**{med["fastai_get_preds"] / med["ours"]:.2f}x** |')
    print(f'| fastai `learn.predict` loop (measured on {res["fastai_predict"]["n"]} reviews: {per*1000:.1f} ms each, x {n}) | '
          f'{per * n:.1f} s | {mem("fastai_predict")} | **{per * n / med["ours"]:.1f}x** |')
    print(f'\n# the most any implementation of this model could gain on this machine over the `predict` loop, with no '
          f'tokenization at all: {per * n / med["ours_model_only"]:.1f}x (predict loop / model part alone)')


if __name__ == '__main__': main()

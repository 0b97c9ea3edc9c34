"""Chapter 1's `TextDataLoaders.from_df`: ulmfit_lib's vs fastai's, side by side in one run.

  python benchmarks/bench_textdataloaders.py                 # 2,000 train + 1,000 test reviews, 3 runs each
  python benchmarks/bench_textdataloaders.py --n 4000 --runs 5

A DataFrame of real IMDb reviews in the layout of fastai's `IMDB_SAMPLE/texts.csv` (`label`, `text`, `is_valid`):
`n` reviews from `train/` and `n/2` from `test/` (balanced, seeded). Each run times building the classifier
DataLoaders (`TextDataLoaders.from_df(df, text_col='text', label_col='label', valid_col='is_valid', bs=64)`:
tokenizing every row, counting, the vocab, numericalizing) plus one shuffled training epoch and the validation pass.
Ours starts from an empty tokenizer cache in every "cold" run (what fastai always does: it has no cache); the
"warm" row is ours with the cache of the previous run, which is what a second session gets. fastai and we use the
same number of tokenizer workers (2). Both results are checked equal (vocab, tokenized frame, validation batches)
before any timing is reported. Ratio = fastai / ours, of medians.
"""
import argparse, os, platform, shutil, statistics, tempfile, time, datetime
import torch


def _machine():
    import fastai
    return (f'{platform.platform()}, {os.cpu_count()} cores, python {platform.python_version()}, torch {torch.__version__}, '
            f'fastai {fastai.__version__}, {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, '
            f'load {os.getloadavg()[0]:.1f}')


def imdb_df(n, seed=0):
    import pandas as pd
    from ulmfit_lib.basics import read_text
    from ulmfit_lib.data import get_imdb, imdb_sample
    path = get_imdb()
    s = imdb_sample(path, n_train=n, n_valid=n // 4 * 2, seed=seed)
    rows = [(f.parent.name, read_text(f), split == 'valid') for split in ('train', 'valid') for f in getattr(s, split)]
    return pd.DataFrame(rows, columns=['label', 'text', 'is_valid'])


def build_and_epoch(make):
    t = time.perf_counter(); dls = make(); t_build = time.perf_counter() - t
    t = time.perf_counter(); n = sum(1 for _ in dls.train) + sum(1 for _ in dls.valid); t_epoch = time.perf_counter() - t
    return dls, t_build, t_epoch, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--n', type=int, default=2000, help='train reviews (test reviews: half as many)')
    ap.add_argument('--runs', type=int, default=3)
    a = ap.parse_args()
    import fastai.text.data as fdata
    from ulmfit_lib.clas_data import TextDataLoaders
    df = imdb_df(a.n)
    kw = dict(text_col='text', label_col='label', valid_col='is_valid', bs=64)
    print(f'# {_machine()}\n# {len(df)} reviews ({int((~df.is_valid).sum())} train, {int(df.is_valid.sum())} valid)')
    tmp = tempfile.mkdtemp(prefix='bench_tdl_')
    res = {'fastai': [], 'ours cold': [], 'ours warm': []}
    try:
        for r in range(a.runs):
            cache = os.path.join(tmp, f'cache{r}')
            theirs = build_and_epoch(lambda: fdata.TextDataLoaders.from_df(df, n_workers=2, **kw))
            ours = build_and_epoch(lambda: TextDataLoaders.from_df(df, n_workers=2, cache_dir=cache, **kw))
            warm = build_and_epoch(lambda: TextDataLoaders.from_df(df, n_workers=2, cache_dir=cache, **kw))
            if r == 0:          # same data before any number counts
                o, t = ours[0], theirs[0]
                assert o.vocab[0] == t.vocab[0] and list(o.vocab[1]) == list(t.vocab[1]), 'vocab differs'
                assert [list(x) for x in o.train_ds.items.text] == [list(x) for x in t.train_ds.items.text], 'tokens differ'
                for b1, b2 in zip(o.valid, t.valid): assert all(torch.equal(u, v) for u, v in zip(b1, b2)), 'batches differ'
                print(f'# checked: same vocab ({len(o.vocab[0])}), same tokenized frame, same {len(o.valid)} validation batches')
            for k, v in zip(res, (theirs, ours, warm)): res[k].append(v[1:3])
            print(f'run {r}: fastai build {theirs[1]:.2f}s epoch {theirs[2]:.2f}s | ours cold {ours[1]:.2f}s + {ours[2]:.2f}s | '
                  f'warm {warm[1]:.2f}s + {warm[2]:.2f}s')
    finally: shutil.rmtree(tmp, ignore_errors=True)
    med = {k: (statistics.median(b for b, _ in v), statistics.median(e for _, e in v)) for k, v in res.items()}
    fb, fe = med['fastai']
    print(f'\n| what | fastai | ulmfit_lib | ratio |\n|---|---|---|---|')
    for k in ('ours cold', 'ours warm'):
        ob, oe = med[k]
        print(f'| from_df build, {k.split()[1]} cache (median of {a.runs}) | {fb:.2f} s | {ob:.2f} s | {fb/ob:.2f}x |')
        print(f'| build + train epoch + valid pass, {k.split()[1]} | {fb+fe:.2f} s | {ob+oe:.2f} s | {(fb+fe)/(ob+oe):.2f}x |')


if __name__ == '__main__': main()

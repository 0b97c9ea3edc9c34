"""Full-corpus token parity with fastai 2.8, both paths, on the IMDb reviews (all 100,000 by default).

    python benchmarks/parity_tokenize.py [--n 100000] [--workers 2]

- per-item path: `ulmfit_lib.tokenize.Tokenizer(WordTokenizer())(txt)` vs fastai's `Tokenizer(SpacyTokenizer())(txt)`;
- batched path: `ulmfit_lib.corpus.tokenize_texts` vs fastai's `tokenize_texts` (post rules applied);
and how many reviews the two paths disagree on (fastai's own per-item/batched difference, matched by us).
The whole-folder path (`tokenize_folder`, counts, lengths) is checked by `bench_tokenize.py corpus`.
"""
import argparse, datetime, multiprocessing, os, platform, random, sys, time
from pathlib import Path

_texts, _batched = None, True

def _check(bounds):
    import fastai.text.core as fc
    from ulmfit_lib.tokenize import Tokenizer, WordTokenizer
    from ulmfit_lib.corpus import tokenize_texts
    a, b = bounds
    texts = _texts[a:b]
    ours, theirs = Tokenizer(WordTokenizer()), fc.Tokenizer(fc.SpacyTokenizer())
    item_bad, batch_bad, differ = [], [], 0
    if _batched:
        ob = tokenize_texts(texts, n_workers=0)
        fb = fc.tokenize_texts(texts, n_workers=0)
    for i, t in enumerate(texts):
        oi, fi = ours(t), list(theirs(t))
        if oi != fi: item_bad.append(a + i)
        fpost = [fc.replace_space(x) for x in fi]           # what fastai's batched path makes of the same tokens
        if fi != fpost: differ += 1
        if _batched:
            if ob[i] != list(fb[i]): batch_bad.append(a + i)
            if list(fb[i]) != fpost: batch_bad.append(a + i)
    return item_bad, batch_bad, differ


def main():
    global _texts, _batched
    p = argparse.ArgumentParser()
    p.add_argument('--n', type=int, default=100_000); p.add_argument('--workers', type=int, default=2)
    p.add_argument('--no-batched', action='store_true', help='skip the batched path (bench_tokenize.py corpus checks it on all 100k)')
    a = p.parse_args()
    _batched = not a.no_batched
    from fastai.data.transforms import get_files
    from ulmfit_lib.basics import read_text
    from ulmfit_lib.data import get_imdb
    path = get_imdb()
    files = sorted(get_files(path, extensions=['.txt'], folders=['train', 'test', 'unsup']))
    files = [f for f in files if f.parent.name in ('pos', 'neg', 'unsup')]
    if a.n < len(files): files = sorted(random.Random(0).sample(files, a.n))   # a seeded sample of all folders
    _texts = [read_text(f) for f in files]
    print(f'# parity_tokenize\n\n{platform.platform()}, {os.cpu_count()} cores, '
          f'{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()}\n')
    step = 500
    bounds = [(i, min(len(_texts), i + step)) for i in range(0, len(_texts), step)]
    t = time.perf_counter()
    item_bad, batch_bad, differ = [], [], 0
    with multiprocessing.get_context('fork').Pool(a.workers) as pool:
        for ib, bb, d in pool.imap_unordered(_check, bounds):
            item_bad += ib; batch_bad += bb; differ += d
    n = len(_texts)
    print(f'{n} reviews checked in {time.perf_counter() - t:.0f}s')
    print(f'- per-item path (Tokenizer(tok)(txt)): {n - len(item_bad)}/{n} identical to fastai')
    if _batched: print(f'- batched path (tokenize_texts): {n - len(batch_bad)}/{n} identical to fastai')
    print(f'- fastai per-item vs batched (post rule) differ on {differ} reviews ({100 * differ / n:.2f}%), each matched')
    if item_bad or batch_bad:
        print('MISMATCH', [str(files[i]) for i in (item_bad + batch_bad)[:10]]); sys.exit(1)


if __name__ == '__main__': main()

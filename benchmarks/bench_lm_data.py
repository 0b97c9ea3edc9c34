"""Language-model batching: ulmfit_lib's `LMDataLoader` vs fastai's, side by side in one run.

  python benchmarks/bench_lm_data.py                 # ~1.2M real IMDb tokens + DataBlock build (warm cache)
  python benchmarks/bench_lm_data.py --full          # also one epoch over an IMDb-sized (~30M token) corpus

1. One shuffled epoch (bs=64, seq_len=72) over ~1.2M tokens of real IMDb reviews (unsup/, tokenized once with
   ulmfit_lib.tokenize into its cache and numericalized). fastai gets the documents already numericalized as
   `LMTensorText`s (its best case: inside a DataBlock it also re-reads and re-numericalizes each document).
   Median of several epochs each; ratio = fastai / ours.
2. Building LM DataLoaders with the chapter's DataBlock on a folder of those reviews, from a warm tokenizer cache
   (second run) for both libraries, and the first epoch through them.
3. (--full) One epoch over a corpus the size of IMDb's 100k reviews. Unless the full IMDb corpus is already in
   ulmfit_lib's cache, it is synthetic: 100,000 documents whose lengths are drawn from the real lengths of part 1
   and random ids. Each side runs in its own subprocess so that its peak RSS is its own.
"""
import argparse, json, os, platform, resource, shutil, statistics, subprocess, sys, tempfile, time, datetime
from pathlib import Path
import numpy as np
import torch

N_DOCS = 4300          # ~1.2M tokens of unsup reviews


def _rss_mb(): return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _machine():
    import fastai
    return (f'{platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
            f'python {platform.python_version()}, torch {torch.__version__}, fastai {fastai.__version__}, '
            f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC')


def real_corpus(n_docs=N_DOCS):
    "Numericalized ids/offsets of the first `n_docs` unsup reviews (sorted names), tokenized with ulmfit_lib (cached)."
    from ulmfit_lib.data import get_imdb
    from ulmfit_lib.corpus import tokenize_corpus
    from ulmfit_lib.numericalize import corpus_vocab, numericalize_corpus
    path = get_imdb()
    files = sorted((path/'unsup').glob('*.txt'))[:n_docs]
    corpus = tokenize_corpus(files, path=path, progress=False)
    vocab = corpus_vocab(corpus)
    ids, offs = numericalize_corpus(corpus, vocab)
    return path, files, ids, offs, vocab


def time_epoch(make_dl, n_runs):
    "Median and all times of `n_runs` full epochs (a fresh shuffled order each), plus the batch count."
    dl = make_dl(); times = []
    for _ in range(n_runs):
        t = time.perf_counter(); n = sum(1 for _ in dl); times.append(time.perf_counter() - t)
    return statistics.median(times), times, n


def fastai_docs(ids, offs):
    from fastai.text.data import LMTensorText
    return [LMTensorText(torch.from_numpy(ids[offs[i]:offs[i+1]].astype(np.int64))) for i in range(len(offs) - 1)]


def part1(ids, offs, runs_ours, runs_fastai):
    import fastai.text.data as fdata
    from ulmfit_lib.lm_data import LMDataLoader
    docs = fastai_docs(ids, offs)
    # sanity: unshuffled batches identical
    a, b = LMDataLoader.from_ids(ids, offs), fdata.LMDataLoader(docs)
    for (x, y), (u, v) in zip(a, b): assert torch.equal(x, u) and torch.equal(y, v)
    ours = time_epoch(lambda: LMDataLoader.from_ids(ids, offs, bs=64, seq_len=72, shuffle=True), runs_ours)
    theirs = time_epoch(lambda: fdata.LMDataLoader(docs, bs=64, seq_len=72, shuffle=True), runs_fastai)
    assert ours[2] == theirs[2]
    return ours, theirs


def part2(path, files, tmp):
    "Chapter 10's LM DataBlock on a folder of `files`: build time from a warm cache and first epoch, both libraries."
    from functools import partial
    from fastai.data.block import DataBlock
    from fastai.data.transforms import get_text_files, RandomSplitter
    import fastai.text.data as fdata
    from ulmfit_lib.clas_data import TextBlock
    ipath = tmp/'imdb'; (ipath/'unsup').mkdir(parents=True)
    for f in files: os.link(f, ipath/'unsup'/f.name) if os.stat(f).st_dev == os.stat(tmp).st_dev else shutil.copy(f, ipath/'unsup')
    res = {}
    for name, tb in [('ulmfit_lib', lambda: TextBlock.from_folder(ipath, is_lm=True, cache_dir=tmp/'cache')),
                     ('fastai', lambda: fdata.TextBlock.from_folder(ipath, is_lm=True))]:
        def build():
            return DataBlock(blocks=tb(), get_items=partial(get_text_files, folders=['unsup']),
                             splitter=RandomSplitter(0.1, seed=42)).dataloaders(ipath, path=ipath, bs=64, seq_len=72)
        t = time.perf_counter(); build(); cold = time.perf_counter() - t          # tokenizes (not compared: cold)
        t = time.perf_counter(); dls = build(); warm = time.perf_counter() - t
        t = time.perf_counter(); n = sum(1 for _ in dls.train); ep = time.perf_counter() - t
        res[name] = dict(cold=cold, warm=warm, epoch=ep, n=n, vocab=len(dls.vocab))
    return res


def _cur_rss_mb():
    with open('/proc/self/statm') as f: return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2**20


def _hwm_mb():
    for l in open('/proc/self/status'):
        if l.startswith('VmHWM:'): return int(l.split()[1]) / 1024


def child(side, n_docs, seed):
    "One epoch over an IMDb-sized corpus in this process; prints JSON with times and memory (MB above the imports)."
    import fastai.text.data as fdata
    from ulmfit_lib.lm_data import LMDataLoader
    base = _cur_rss_mb()
    with open('/proc/self/clear_refs', 'w') as f: f.write('5')     # reset the peak (VmHWM) to the current RSS
    lens = np.load(os.environ['BENCH_LENS'])
    rng = np.random.default_rng(seed)
    L = rng.choice(lens, n_docs)
    ids = rng.integers(0, 60000, int(L.sum()), dtype=np.int32)
    offs = np.concatenate([[0], np.cumsum(L)])
    data = _cur_rss_mb() - base
    t0 = time.perf_counter()
    if side == 'ours': dl = LMDataLoader.from_ids(ids, offs, bs=64, seq_len=72, shuffle=True)
    else:
        docs = fastai_docs(ids, offs); del ids
        dl = fdata.LMDataLoader(docs, bs=64, seq_len=72, shuffle=True)
    t1 = time.perf_counter(); n = sum(1 for _ in dl); t2 = time.perf_counter()
    print(json.dumps(dict(side=side, n_tokens=int(offs[-1]), n_docs=n_docs, build=t1 - t0, epoch=t2 - t1, batches=n,
                          corpus_mb=data, peak_mb=_hwm_mb() - base)))


def imdb_child(side, max_batches):
    "Chapter 10's LM DataBlock on the whole IMDb folder in this process: build (cold if no cache yet, then warm), one epoch."
    from functools import partial
    from fastai.data.block import DataBlock
    from fastai.data.transforms import get_text_files, RandomSplitter
    import fastai.text.data as fdata
    from ulmfit_lib.clas_data import TextBlock
    from ulmfit_lib.data import get_imdb
    path = get_imdb()
    def build():
        # fastai writes its tokenized copy to a private folder (a shared ~/.fastai/data/imdb_tok may be partial)
        tb = (TextBlock.from_folder(path, is_lm=True) if side == 'ours' else
              fdata.TextBlock.from_folder(path, is_lm=True, output_dir=os.environ['BENCH_FASTAI_TOK']))
        return DataBlock(blocks=tb, get_items=partial(get_text_files, folders=['train', 'test', 'unsup']),
                         splitter=RandomSplitter(0.1, seed=42)).dataloaders(path, path=path, bs=64, seq_len=72)
    t = time.perf_counter(); build(); first = time.perf_counter() - t
    import gc; gc.collect()
    base = _cur_rss_mb()
    with open('/proc/self/clear_refs', 'w') as f: f.write('5')
    t = time.perf_counter(); dls = build(); warm = time.perf_counter() - t
    n_tok = int(dls.train.n_tok) if side == 'ours' else int(sum(dls.train.lens.coll))
    t = time.perf_counter(); n = 0
    for _ in dls.train:
        n += 1
        if max_batches and n >= max_batches: break
    ep = time.perf_counter() - t
    print(json.dumps(dict(side=side, first_build=first, warm_build=warm, epoch=ep, batches=n, total_batches=len(dls.train),
                          train_tokens=n_tok, vocab=len(dls.vocab), peak_mb=_hwm_mb() - base)))


def part4(max_batches):
    out = {}
    tokdir = Path(tempfile.mkdtemp(prefix='fastai-imdb-tok-'))
    for side in ('ours', 'fastai'):
        r = subprocess.run([sys.executable, __file__, '--imdb-child', side, '--max-batches', str(max_batches if side == 'fastai' else 0)],
                           capture_output=True, text=True, env={**os.environ, 'BENCH_FASTAI_TOK': str(tokdir/'imdb_tok')})
        if r.returncode: shutil.rmtree(tokdir, ignore_errors=True); raise RuntimeError(r.stderr[-3000:])
        out[side] = json.loads(r.stdout.strip().splitlines()[-1])
        print(side, out[side], flush=True)
    shutil.rmtree(tokdir, ignore_errors=True)
    return out


def part3(lens, n_docs=100_000):
    tmpf = Path(tempfile.mkdtemp())/'lens.npy'; np.save(tmpf, lens)
    out = {}
    for side in ('ours', 'fastai'):
        r = subprocess.run([sys.executable, __file__, '--child', side, '--n-docs', str(n_docs)], capture_output=True, text=True,
                           env={**os.environ, 'BENCH_LENS': str(tmpf)})
        if r.returncode: raise RuntimeError(r.stderr[-2000:])
        out[side] = json.loads(r.stdout.strip().splitlines()[-1])
    shutil.rmtree(tmpf.parent)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--full', action='store_true'); ap.add_argument('--child'); ap.add_argument('--n-docs', type=int, default=100_000)
    ap.add_argument('--runs', type=int, default=5); ap.add_argument('--fastai-runs', type=int, default=3)
    ap.add_argument('--imdb', action='store_true'); ap.add_argument('--imdb-child'); ap.add_argument('--max-batches', type=int, default=0)
    ap.add_argument('--skip-part1', action='store_true')
    ap.add_argument('--skip-datablock', action='store_true'); ap.add_argument('--real-docs', type=int, default=N_DOCS)
    a = ap.parse_args()
    if a.child: return child(a.child, a.n_docs, seed=0)
    if a.imdb_child: return imdb_child(a.imdb_child, a.max_batches)
    print(f'machine: {_machine()}\nload average at start: {os.getloadavg()}\n')
    if a.imdb:
        r = part4(a.max_batches); o, f = r['ours'], r['fastai']
        print(f'## Chapter 10 LM DataBlock on the whole IMDb folder (train+test+unsup, RandomSplitter(0.1)), bs=64, seq_len=72\n')
        print(f'{o["train_tokens"]:,} training tokens, vocab {o["vocab"]:,} (fastai: {f["vocab"]:,}); each library in its own process; '
              f'"first build" tokenizes unless that library\'s cache already existed; peak RSS above the process after the first build.\n')
        print('| library | first build s | warm-cache build s | train epoch s | batches timed | peak RSS MB (warm build + epoch) |\n|---|---|---|---|---|---|')
        for k, v in r.items():
            ep = v['epoch'] if v['batches'] == v['total_batches'] else f'{v["epoch"]:.1f} for {v["batches"]} -> ~{v["epoch"]*v["total_batches"]/v["batches"]:.0f} (extrapolated)'
            print(f'| {k} | {v["first_build"]:.1f} | {v["warm_build"]:.2f} | {ep if isinstance(ep, str) else f"{ep:.2f}"} | {v["batches"]}/{v["total_batches"]} | {v["peak_mb"]:.0f} |')
        print(f'\nload average: {os.getloadavg()}')
        return
    path, files, ids, offs, vocab = real_corpus(a.real_docs)
    ours, theirs = part1(ids, offs, a.runs, a.fastai_runs)
    print(f'## One shuffled LM epoch, bs=64, seq_len=72, {len(files)} IMDb unsup reviews = {int(offs[-1]):,} tokens '
          f'({ours[2]} batches)\n')
    print('| loader | median s/epoch | runs (s) | tokens/s | fastai / ours |\n|---|---|---|---|---|')
    print(f'| ulmfit_lib `LMDataLoader` | {ours[0]:.3f} | {", ".join(f"{t:.3f}" for t in ours[1])} | {offs[-1]/ours[0]:,.0f} | {theirs[0]/ours[0]:.1f}x |')
    print(f'| fastai `LMDataLoader` | {theirs[0]:.3f} | {", ".join(f"{t:.3f}" for t in theirs[1])} | {offs[-1]/theirs[0]:,.0f} | 1.0x |')
    print(f'\nload average: {os.getloadavg()}\n')
    if not a.skip_datablock:
        tmp = Path(tempfile.mkdtemp())
        try: r = part2(path, files, tmp)
        finally: shutil.rmtree(tmp, ignore_errors=True)
        print(f'## Chapter 10 LM DataBlock on a folder of the same {len(files)} reviews (bs=64, seq_len=72)\n')
        print('| library | first build (tokenizes) s | warm-cache build s | first epoch s | build+epoch fastai / ours |\n|---|---|---|---|---|')
        o, f = r['ulmfit_lib'], r['fastai']
        for k, v in r.items():
            print(f'| {k} | {v["cold"]:.2f} | {v["warm"]:.2f} | {v["epoch"]:.2f} | '
                  f'{(f["warm"]+f["epoch"])/(v["warm"]+v["epoch"]):.1f}x |')
        assert o['n'] == f['n'] and o['vocab'] == f['vocab']
        print(f'\nload average: {os.getloadavg()}\n')
    if a.full:
        lens = np.diff(offs)
        r = part3(lens, a.n_docs)
        o, f = r['ours'], r['fastai']
        print(f'## One shuffled LM epoch over an IMDb-sized synthetic corpus: {o["n_docs"]:,} documents, {o["n_tokens"]:,} tokens '
              f'(lengths drawn from the real ones above, random ids), each side in its own process\n')
        print(f'(the int32 corpus itself: {o["corpus_mb"]:.0f} MB; peak RSS is measured above the process after its imports)\n')
        print('| loader | build s | epoch s | peak RSS MB (incl. corpus) | fastai / ours (epoch) |\n|---|---|---|---|---|')
        for k, v in r.items():
            print(f'| {k} | {v["build"]:.2f} | {v["epoch"]:.2f} | {v["peak_mb"]:.0f} | {f["epoch"]/v["epoch"]:.1f}x |')
        print(f'\nload average: {os.getloadavg()}')


if __name__ == '__main__': main()

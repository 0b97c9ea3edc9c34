"""Tokenization: ulmfit_lib vs fastai 2.8, side by side in one run.

    python benchmarks/bench_tokenize.py texts   [--n 2000] [--runs 5]   # tokenize_texts, 2 workers
    python benchmarks/bench_tokenize.py corpus  [--runs 1]              # whole IMDb folder (100k reviews) + peak RSS
    python benchmarks/bench_tokenize.py reload  [--runs 3]              # load the cached corpus vs fastai's _tok folder
    python benchmarks/bench_tokenize.py all

Set ULMFIT_IMDB_ARCHIVE to a local imdb.tgz (else fastai downloads it). Run under `nice -n 10` on a shared machine.
Every section checks that both sides produce the same tokens before timing counts.
"""
import argparse, datetime, json, os, platform, resource, shutil, statistics, subprocess, sys, tempfile, time
from pathlib import Path

HERE = Path(__file__).resolve()


def machine():
    import torch, fastai, spacy
    return (f'{platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores '
            f'(affinity {len(os.sched_getaffinity(0))}), Python {platform.python_version()}, torch {torch.__version__}, '
            f'fastai {fastai.__version__}, spaCy {spacy.__version__}, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC')


def load(): return 'load average %.2f %.2f %.2f' % os.getloadavg()


def table(rows):
    print('| case | fastai (s) | ulmfit_lib (s) | speed-up |\n|---|---|---|---|')
    for name, f, o in rows: print(f'| {name} | {f:.3f} | {o:.3f} | {f/o:.2f}x |')


def bench_texts(n, runs):
    import fastai.text.core as fc
    from ulmfit_lib.basics import read_text
    from ulmfit_lib.data import get_imdb, imdb_sample
    from ulmfit_lib.tokenize import WordTokenizer
    from ulmfit_lib.corpus import tokenize_texts
    s = imdb_sample(get_imdb(), n_train=n, n_valid=0, seed=0)
    texts = [read_text(f) for f in s.train]
    ftok, otok = fc.SpacyTokenizer(), WordTokenizer()   # built once, outside the timings, for both
    ref = [list(o) for o in fc.tokenize_texts(texts, n_workers=2, tok=ftok)]
    assert tokenize_texts(texts, n_workers=2, tok=otok) == ref, 'tokens differ from fastai'
    tf, to = [], []
    print(f'{load()} before')
    for _ in range(runs):   # alternate so that load changes hit both sides
        t = time.perf_counter(); fc.tokenize_texts(texts, n_workers=2, tok=fc.SpacyTokenizer()); tf.append(time.perf_counter() - t)
        t = time.perf_counter(); tokenize_texts(texts, n_workers=2, tok=WordTokenizer()); to.append(time.perf_counter() - t)
    print(f'{load()} after; fastai runs {[round(x, 2) for x in tf]}, ulmfit_lib runs {[round(x, 2) for x in to]}')
    print(f'\n`tokenize_texts` on {n} IMDb reviews, n_workers=2, fresh tokenizer each run, median of {runs} runs:\n')
    table([(f'tokenize_texts, {n} reviews', statistics.median(tf), statistics.median(to))])
    return statistics.median(tf) / statistics.median(to)


# ---- whole corpus: each side in its own process, so peak RSS is its own

def _child(side, out):
    from ulmfit_lib.data import get_imdb
    path = get_imdb()
    t = time.perf_counter()
    if side == 'fastai':
        import fastai.text.core as fc
        fc.tokenize_folder(path, n_workers=2, skip_if_exists=False)   # writes beside the data (it ignores output_dir)
    else:
        from ulmfit_lib.corpus import tokenize_folder
        c = tokenize_folder(path, n_workers=2, cache_dir=out, progress=False)
        assert len(c) == 100_000
    dt = time.perf_counter() - t
    r = lambda who: resource.getrusage(who).ru_maxrss / 1024
    print(json.dumps(dict(seconds=dt, rss_main_mb=r(resource.RUSAGE_SELF), rss_worker_mb=r(resource.RUSAGE_CHILDREN))))


def _run_child(side, out):
    res = subprocess.run([sys.executable, str(HERE), '_child', side, str(out)], capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def fastai_out():
    "Where fastai's tokenize_folder writes: beside the folder (fastai 2.8 drops its `output_dir` argument)"
    from ulmfit_lib.data import get_imdb
    p = get_imdb()
    return p.parent/f'{p.name}_tok'


def bench_corpus(runs, workdir):
    fo, oo = fastai_out(), workdir/'ours_cache'
    rf, ro = [], []
    print(f'{load()} before')
    for _ in range(runs):
        for d in (fo, oo): shutil.rmtree(d, ignore_errors=True)
        rf.append(_run_child('fastai', fo)); ro.append(_run_child('ours', oo))
        print(f'{load()}; fastai {rf[-1]}, ulmfit_lib {ro[-1]}')
    check_corpus(fo, oo)
    mf, mo = statistics.median(r['seconds'] for r in rf), statistics.median(r['seconds'] for r in ro)
    print(f'\nWhole IMDb folder (100,000 reviews: tokenize + count + write), n_workers=2, median of {runs}:\n')
    table([('tokenize_folder, 100k reviews', mf, mo)])
    print(f'\npeak RSS (MB): fastai main {max(r["rss_main_mb"] for r in rf):.0f}, largest worker {max(r["rss_worker_mb"] for r in rf):.0f}; '
          f'ulmfit_lib main {max(r["rss_main_mb"] for r in ro):.0f}, largest worker {max(r["rss_worker_mb"] for r in ro):.0f}')
    du = lambda d: sum(f.stat().st_size for f in Path(d).rglob('*') if f.is_file()) / 2**20
    print(f'on disk: fastai _tok folder {du(fo):.0f} MB in {sum(1 for _ in fo.rglob("*.txt"))} files; ulmfit_lib cache {du(oo):.0f} MB in {sum(1 for f in oo.rglob("*") if f.is_file())} files')
    return mf / mo


def check_corpus(fo, oo):
    "Full-corpus parity of the batched path: every document's tokens, the lengths and the counts."
    import fastai.text.core as fc
    from ulmfit_lib.data import get_imdb
    from ulmfit_lib.corpus import tokenize_folder
    c = tokenize_folder(get_imdb(), cache_dir=oo, progress=False)
    flens, fcount = fc.load_pickle(fo/'lengths.pkl'), fc.load_pickle(fo/'counter.pkl')
    assert {str(f): int(n) for f, n in zip(c.files, c.lengths)} == flens, 'lengths differ'
    assert c.counter() == fcount, 'counts differ'
    bad = [str(f) for i, f in enumerate(c.files) if c.doc(i) != (fo/f).read_text(encoding='utf8').split(' ')]
    assert not bad, f'{len(bad)} documents differ, e.g. {bad[:3]}'
    print(f'parity: all {len(c)} documents, {len(c.ids)} tokens, {len(c.vocab)} distinct tokens identical to fastai tokenize_folder')


def bench_reload(runs, workdir):
    import fastai.text.core as fc
    from ulmfit_lib.data import get_imdb
    from ulmfit_lib.corpus import tokenize_folder, load_corpus
    path, fo, oo = get_imdb(), fastai_out(), workdir/'ours_cache'
    if not (fo/'counter.pkl').exists() or not oo.exists(): raise SystemExit('run the corpus section first (same --workdir)')
    cache_path = tokenize_folder(path, cache_dir=oo, progress=False).cache_path
    def ours_checked():                                            # lists and stats the 100k files, recomputes the key
        c = tokenize_folder(path, cache_dir=oo, progress=False)
        return int(c.ids.sum()) + len(c.vocab)                     # touch every token id
    def ours_trusted():                                            # a known cache folder, like fastai's skip_if_exists
        c = load_corpus(cache_path)
        return int(c.ids.sum()) + len(c.vocab)
    def fastai_tok():
        return fc.Tokenizer.from_folder(path)                      # counter + lengths pickles, files listed
    def fastai_all():
        tkn = fastai_tok()
        files = fc.get_files(path, extensions=['.txt'])
        return sum(len((fo/f.relative_to(path)).read_text(encoding='utf8').split(' ')) for f in files)
    ts = {f: [] for f in (ours_checked, ours_trusted, fastai_tok, fastai_all)}
    print(f'{load()} before')
    for _ in range(runs):
        for f, acc in ts.items():
            t = time.perf_counter(); f(); acc.append(time.perf_counter() - t)
    print(f'{load()} after')
    m = {f.__name__: statistics.median(v) for f, v in ts.items()}
    print(f'\nReload the tokenized IMDb corpus (warm page cache), median of {runs}:\n')
    table([('all tokens; ours re-validates its inputs (lists + stats 100k files, key) then mmaps', m['fastai_all'], m['ours_checked']),
           ('all tokens; ours `load_corpus` of a known cache (no input check, as fastai)', m['fastai_all'], m['ours_trusted']),
           ('fastai `Tokenizer.from_folder` only (pickles, no token read) vs ours `load_corpus`', m['fastai_tok'], m['ours_trusted'])])
    return m['fastai_all'] / m['ours_trusted']


if __name__ == '__main__':
    if sys.argv[1:2] == ['_child']: _child(sys.argv[2], sys.argv[3]); sys.exit()
    p = argparse.ArgumentParser()
    p.add_argument('what', choices=['texts', 'corpus', 'reload', 'all'])
    p.add_argument('--n', type=int, default=2000); p.add_argument('--runs', type=int, default=None)
    p.add_argument('--workdir', default=str(Path(tempfile.gettempdir())/'bench_tokenize'))
    a = p.parse_args()
    wd = Path(a.workdir); wd.mkdir(parents=True, exist_ok=True)
    print(f'# bench_tokenize {a.what}\n\n{machine()}\n')
    if a.what in ('texts', 'all'): bench_texts(a.n, a.runs or 5)
    if a.what in ('corpus', 'all'): bench_corpus(a.runs or 1, wd)
    if a.what in ('reload', 'all'): bench_reload(a.runs or 3, wd)

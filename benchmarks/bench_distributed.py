"""Data parallelism on a CPU: what two gloo processes cost against one process (tokens/s of an LM stage).

  python benchmarks/bench_distributed.py                  # smoke profile's model, 3 runs each
  python benchmarks/bench_distributed.py --profile tiny --runs 5 --tokens 60000

One LM epoch (the `smoke`/`tiny` profile's AWD-LSTM, bs, seq_len; dropout as the profile) over synthetic token ids with
the profile's vocab size, through `ulmfit_lib.distributed.distributed` (fastai's `distrib_ctx`, DDP over gloo):
  A. one process, 2 threads (`torch.set_num_threads(2)`), no process group;
  B. `torchrun --nproc_per_node 2`, 1 thread each: each rank reads half the rows of every batch (bs rows each, so the two
     together read what one process with 2*bs rows would; A uses 2*bs rows too: the same tokens per step).
tokens/s = tokens of the epoch (all ranks) / wall time of the fit (the slowest rank). Median of `--runs` runs.
No target: it shows the overhead of the gradient all-reduce and the second process on a small CPU.

  python benchmarks/bench_distributed.py --job --runs 2   # the whole `tiny` job (3 stages + control, no baseline)

`--job`: the `ulmfit-imdb` job on the `tiny` profile from a corpus cache (made once): one process with 2 threads and
bs=clas_bs=16, against `torchrun --nproc_per_node 2` with 1 thread and bs=clas_bs=8 per rank (the same rows per step).
Wall time of the command (imports, process group, all stages) and report.json's seconds and LM tokens/s.
"""
import argparse, json, os, platform, statistics, subprocess, sys, socket, time, datetime
from pathlib import Path
import numpy as np
import torch

N_TOKENS = 120_000


def _corpus(vocab_sz, n_tokens=N_TOKENS, seed=0):
    rng = np.random.default_rng(seed)
    lens = rng.integers(50, 400, n_tokens // 225)
    return rng.integers(9, vocab_sz, lens.sum()).astype(np.int32), np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)


def run_one(profile, bs, out=None, n_tokens=N_TOKENS):
    "One LM epoch under `distributed` in this process (rank from the environment); prints/saves `tokens`, `seconds`."
    from fastai.metrics import accuracy
    from ulmfit_lib.profile import get_profile
    from ulmfit_lib.awd_lstm import AWD_LSTM
    from ulmfit_lib.lm_data import lm_dls_from_ids, TextIds
    from ulmfit_lib.learner import language_model_learner
    from ulmfit_lib.distributed import distributed, world_info
    p = get_profile(profile)
    vocab = ['xxunk', 'xxpad', 'xxbos', 'xxeos', 'xxfld', 'xxrep', 'xxwrep', 'xxup', 'xxmaj'] + [f'w{i}' for i in range(p.max_vocab - 9)]
    dls = lm_dls_from_ids(TextIds.from_ids(*_corpus(len(vocab), n_tokens), vocab=vocab), bs=bs, seq_len=p.seq_len, seed=p.seed)
    torch.manual_seed(0)
    learn = language_model_learner(dls, AWD_LSTM, config=p.lm_config(), drop_mult=p.lm_drop_mult, pretrained=False,
                                   metrics=accuracy, path='/tmp')
    rank, ws = world_info()
    with distributed(learn, timeout=120), learn.no_bar(), learn.no_logging():
        t0 = time.perf_counter(); learn.fit(1, p.lm1_lr); secs = time.perf_counter() - t0
    n_tok = len(dls.train.new(rank=rank, world_size=ws) if ws > 1 else dls.train) * bs * p.seq_len * ws
    res = dict(rank=rank, world_size=ws, tokens=n_tok, seconds=secs)
    if out: Path(out).write_text(json.dumps(res))
    return res


def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def run_single(profile, bs, n_tokens):
    env = dict(os.environ, OMP_NUM_THREADS='2')
    env.pop('WORLD_SIZE', None); env.pop('RANK', None)
    r = subprocess.run([sys.executable, __file__, '--worker', '--profile', profile, '--bs', str(bs), '--threads', '2', '--tokens', str(n_tokens)],
                       env=env, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_ddp(profile, bs, tmp, n_tokens):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    outs = [Path(tmp)/f'rank{r}.json' for r in range(2)]
    for o in outs: o.unlink(missing_ok=True)
    subprocess.run(['torchrun', '--nproc_per_node', '2', '--master_addr', '127.0.0.1', '--master_port', str(_free_port()),
                    __file__, '--worker', '--profile', profile, '--bs', str(bs), '--threads', '1', '--tokens', str(n_tokens), '--out', str(Path(tmp)/'rank{rank}.json')],
                   env=env, capture_output=True, text=True, check=True)
    res = [json.loads(o.read_text()) for o in outs]
    return dict(tokens=res[0]['tokens'], seconds=max(r['seconds'] for r in res))


def _job_cmd(cache, out, n, bs):
    launch = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(n)] if n > 1 else [sys.executable]
    return launch + ['-m', 'ulmfit_lib.ulmfit', '--profile', 'tiny', '--device', 'cpu', '--no-baseline', '--corpus-cache', str(cache),
                     '--out', str(out), '--set', f'bs={bs}', f'clas_bs={bs}']


def run_job(runs, tmp):
    "The tiny job alone (2 threads, bs 16) and under torchrun (2 ranks, 1 thread, bs 8 each): rows of the results table"
    cache = Path(tmp)/'cache'
    if not (cache/'meta.json').exists():
        subprocess.run([sys.executable, '-m', 'ulmfit_lib.ulmfit', '--profile', 'tiny', '--corpus-cache', str(cache), '--make-cache'], check=True)
    res = {1: [], 2: []}
    for i in range(runs):
        for n in (1, 2):
            out = Path(tmp)/f'run{n}_{i}'
            env = dict(os.environ, OMP_NUM_THREADS=str(3 - n))
            t0 = time.perf_counter()
            subprocess.run(_job_cmd(cache, out, n, 16 // n), env=env, capture_output=True, text=True, check=True)
            rep = json.loads((out/'report.json').read_text())
            res[n].append(dict(wall=time.perf_counter() - t0, job=rep['job_seconds'], lm1=rep['lm']['general']['tokens_per_s'],
                               lm2=rep['lm']['tokens_per_s'], acc=rep['classifier']['accuracy'], ws=rep.get('world_size', 1)))
    med = lambda rs, k: statistics.median(r[k] for r in rs)
    rows = ['| setup | wall s (median) | report job_seconds | stage 1 LM tokens/s | stage 2 LM tokens/s | runs (wall s) |', '|---|---|---|---|---|---|']
    for n, name in ((1, '1 process, 2 threads, bs=clas_bs=16'), (2, 'torchrun 2 ranks (gloo), 1 thread each, bs=clas_bs=8 each')):
        rows.append(f'| {name} | {med(res[n], "wall"):.1f} | {med(res[n], "job"):.1f} | {med(res[n], "lm1"):,.0f} | '
                    f'{med(res[n], "lm2"):,.0f} | {", ".join(format(r["wall"], ".1f") for r in res[n])} |')
    assert all(r['ws'] == n for n in res for r in res[n])
    return rows


def _machine():
    import fastai
    return (f'{platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
            f'python {platform.python_version()}, torch {torch.__version__}, fastai {fastai.__version__}')


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--profile', default='smoke', choices=['smoke', 'tiny'])
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--bs', type=int, default=None, help='rows per rank (default: the profile bs; the single process gets 2*bs)')
    ap.add_argument('--tokens', type=int, default=N_TOKENS, help='tokens of the synthetic corpus')
    ap.add_argument('--job', action='store_true', help='the whole tiny ulmfit-imdb job: alone vs torchrun 2 ranks')
    ap.add_argument('--worker', action='store_true'); ap.add_argument('--threads', type=int, default=1); ap.add_argument('--out')
    a = ap.parse_args()
    if a.worker:
        torch.set_num_threads(a.threads)
        out = a.out.format(rank=os.environ.get('RANK', 0)) if a.out else None
        print(json.dumps(run_one(a.profile, a.bs, out, a.tokens))); return
    if a.job:
        tmp = Path('/tmp')/'bench_distributed_job'; tmp.mkdir(exist_ok=True)
        load0 = os.getloadavg(); rows = run_job(a.runs, tmp); load1 = os.getloadavg()
        print(f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {_machine()}')
        print(f'load average (1, 5, 15 min) before {tuple(round(x, 2) for x in load0)}, after {tuple(round(x, 2) for x in load1)}')
        print('\n'.join(rows)); return
    from ulmfit_lib.profile import get_profile
    bs = a.bs or get_profile(a.profile).bs
    tmp = Path('/tmp')/f'bench_distributed_{os.getpid()}'; tmp.mkdir(exist_ok=True)
    load0 = os.getloadavg()
    single, ddp = [], []
    for _ in range(a.runs):
        single.append(run_single(a.profile, 2 * bs, a.tokens)); ddp.append(run_ddp(a.profile, bs, tmp, a.tokens))
    load1 = os.getloadavg()
    tps = lambda rs: statistics.median(r['tokens'] / r['seconds'] for r in rs)
    print(f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {_machine()}')
    print(f'load average (1, 5, 15 min) before {tuple(round(x, 2) for x in load0)}, after {tuple(round(x, 2) for x in load1)}')
    print(f'profile {a.profile}: LM epoch of {single[0]["tokens"]:,} tokens, seq_len from the profile, {a.runs} runs each (median)')
    print('| setup | tokens/step | tokens/s (median) | runs (tokens/s) |\n|---|---|---|---|')
    for name, rs in [(f'1 process, 2 threads, bs={2*bs}', single), (f'2 processes (gloo), 1 thread each, bs={bs} each', ddp)]:
        each = ', '.join(format(r['tokens'] / r['seconds'], ',.0f') for r in rs)
        print(f'| {name} | {2*bs} rows | {tps(rs):,.0f} | {each} |')
    print(f'two processes / one: {tps(ddp) / tps(single):.2f}x')


if __name__ == '__main__': main()

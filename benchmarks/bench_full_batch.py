"""One training batch of the book's full-size AWD-LSTM language model on this CPU: ulmfit_lib vs fastai 2.8.12, same weights.

    nice -n 5 python benchmarks/bench_full_batch.py              # full size (minutes per batch on 2 cores)
    nice -n 5 python benchmarks/bench_full_batch.py --quick      # small sizes, a smoke test of the script

The batch is what `ulmfit-imdb --profile full` (and the book) trains on: embeddings 400, hidden 1152, 3 layers,
vocab 60,000, bs 128 x seq_len 80 (10,240 tokens). One step = forward, flattened cross-entropy + AR/TAR, backward,
Adam step (`train_step` of bench_awd_lstm.py). Ours and fastai's alternate (ABBA); the table has the median and min
of the runs and the ratio of medians. Why it matters: it says how long a pretrained (WikiText-103) stage 2 would take
here, which is why `full` (and its default `--pretrained wt103`) is a GPU profile and `smoke`/`tiny` train small
models from scratch on CPU.
"""
import argparse, datetime, os, platform, resource, statistics, sys, time, warnings
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import torch
import fastai
import fastai.text.all as fa
from ulmfit_lib.awd_lstm import AWD_LSTM, get_language_model, awd_lstm_lm_config
from bench_awd_lstm import side_by_side, train_step, lm_pair

warnings.filterwarnings('ignore', category=UserWarning)


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true')
    p.add_argument('--runs', type=int, default=3)
    p.add_argument('--warmup', type=int, default=0, help='untimed steps per side first (a full-size step is minutes)')
    p.add_argument('--threads', type=int, default=1, help='torch threads (1: fair on cores shared with other jobs)')
    a = p.parse_args()
    a.vocab, a.bs, a.sl, a.cfg = 60_000, 128, 80, dict(awd_lstm_lm_config)
    if a.quick: a.vocab, a.bs, a.sl, a.cfg = 2_000, 16, 20, dict(awd_lstm_lm_config, emb_sz=40, n_hid=96)
    return a


def main():
    a = parse()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    print(f'# One full-size LM training batch on CPU {"(--quick)" if a.quick else ""}\n')
    print(f'- date {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.platform()}; '
          f'{os.cpu_count()} CPUs; torch threads {torch.get_num_threads()}')
    print(f'- torch {torch.__version__}, fastai {fastai.__version__}, python {platform.python_version()}')
    print(f'- model emb {a.cfg["emb_sz"]}, hidden {a.cfg["n_hid"]}, {a.cfg["n_layers"]} layers, vocab {a.vocab:,}; '
          f'batch {a.bs} x {a.sl}; {a.runs} runs per side (ABBA), {a.warmup} warm-up')
    print(f'- load average at start {os.getloadavg()}\n', flush=True)
    ours, theirs, x, y, opts = lm_pair(a)
    res = side_by_side({k: (lambda m=m: train_step(m, opts[id(m)], x, y)) for k, m in (('ours', ours), ('fastai', theirs))},
                       a.runs, warmup=a.warmup)
    mo, mf = statistics.median(res['ours']), statistics.median(res['fastai'])
    ntok = a.bs * a.sl
    print('| what | ours s (min) | fastai s (min) | fastai / ours | ours tok/s |')
    print('|---|---|---|---|---|')
    print(f'| LM train step, {a.bs} x {a.sl}, vocab {a.vocab:,} | {mo:.1f} ({min(res["ours"]):.1f}) | {mf:.1f} '
          f'({min(res["fastai"]):.1f}) | {mf/mo:.2f}x | {ntok/mo:,.0f} |')
    print(f'\n- every run (s): ours {[round(t, 1) for t in res["ours"]]}, fastai {[round(t, 1) for t in res["fastai"]]}')
    print(f'- peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/2**20:.1f} GiB')
    print(f'- load average at end {os.getloadavg()}; total {time.time()-t0:.0f} s')
    # what this means for the book's stage 2 here: 1 + 10 epochs over all 100,000 reviews (~30M tokens with a 60k vocab)
    epoch_batches = 30_000_000 // ntok
    print(f'- at this speed one epoch of the book\'s stage 2 (~30M tokens, {epoch_batches:,} batches) would take '
          f'~{epoch_batches*mo/3600:.0f} h here, the book\'s 11 epochs ~{11*epoch_batches*mo/86400:.0f} days')


if __name__ == '__main__': main()

"""AWD-LSTM training throughput on a GPU: ulmfit_lib vs fastai, same weights, side by side, mixed precision.

    python benchmarks/gpu_awd_lstm.py            # fastai's LM config, vocab 60,008, bs=128, seq_len=80, bf16 and fp16
    python benchmarks/gpu_awd_lstm.py --quick    # tiny sizes, runs anywhere (CPU included) in seconds

Needs only torch and fastai (no spaCy). One training step = autocast forward, fastai's flattened
cross-entropy in float32, AR/TAR (alpha=2, beta=1, float32), backward (GradScaler for fp16), Adam step.
Ours and fastai's alternate window by window (warm-up first, torch.cuda.synchronize around every window);
the table gives the median tokens/s over the windows and the ratio ours/fastai.
"""
import argparse, datetime, os, platform, statistics, sys, time, warnings
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch
import torch.nn.functional as F
import fastai
from fastai.text.models.awdlstm import AWD_LSTM as FaAWD, awd_lstm_lm_config as fa_cfg
from fastai.text.models.core import get_language_model as fa_get_lm
from ulmfit_lib.awd_lstm import AWD_LSTM, get_language_model, awd_lstm_lm_config, ar_tar_loss


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true', help='tiny sizes, for a smoke test on CPU')
    p.add_argument('--bs', type=int, default=128)
    p.add_argument('--seq-len', type=int, default=80)
    p.add_argument('--vocab', type=int, default=60_008)
    p.add_argument('--windows', type=int, default=7, help='timed windows per model and dtype')
    p.add_argument('--steps', type=int, default=10, help='training steps per window')
    p.add_argument('--warmup', type=int, default=5)
    p.add_argument('--dtypes', default=None, help='comma-separated from bf16, fp16, fp32; default bf16,fp16 (fp32 on CPU)')
    a = p.parse_args()
    if a.quick: a.bs, a.seq_len, a.vocab, a.windows, a.steps, a.warmup = 4, 12, 500, 3, 2, 1
    return a


def sync(dev):
    if dev.type == 'cuda': torch.cuda.synchronize()


def make_models(a, dev):
    cfg = dict(awd_lstm_lm_config, emb_sz=16, n_hid=32) if a.quick else awd_lstm_lm_config
    assert awd_lstm_lm_config == fa_cfg
    torch.manual_seed(0)
    ours = get_language_model(AWD_LSTM, a.vocab, config=cfg).to(dev)
    theirs = fa_get_lm(FaAWD, a.vocab, config=cfg).to(dev)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs


def parity(ours, theirs, a, dev):
    "Max abs difference of the float32 eval outputs (same weights), as a sanity check on this device."
    x = torch.randint(0, a.vocab, (8, a.seq_len), device=dev)
    for m in (ours, theirs): m.eval(); m.reset()
    with torch.no_grad(): d = max((u - v).abs().max().item() for u, v in zip(ours(x), theirs(x)))
    for m in (ours, theirs): m.train(); m.reset()
    return d


def our_warnings(ours, a, dev):
    "Warnings raised by our forward+backward on this device (fastai silences its cuDNN weight warning)."
    x = torch.randint(0, a.vocab, (a.bs, a.seq_len), device=dev)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter('always')
        ours(x)[0].float().sum().backward()
    ours.zero_grad(set_to_none=True); ours.reset()
    return [str(x.message)[:80] for x in w]


class Trainer:
    def __init__(self, model, a, dev, dtype):
        self.m, self.a, self.dev, self.dtype = model, a, dev, dtype
        self.opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        self.scaler = torch.amp.GradScaler(dev.type) if (dtype == torch.float16 and dev.type == 'cuda') else None
        g = torch.Generator().manual_seed(0)
        self.batches = [torch.randint(0, a.vocab, (a.bs, a.seq_len + 1), generator=g).to(dev) for _ in range(4)]
        self.i = 0

    def step(self):
        b = self.batches[self.i % len(self.batches)]; self.i += 1
        x, y = b[:, :-1], b[:, 1:]
        with torch.autocast(self.dev.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            dec, raw, out = self.m(x)
            loss = F.cross_entropy(dec.float().view(-1, dec.shape[-1]), y.reshape(-1))
            loss = loss + ar_tar_loss(out, raw, 2., 1.)
        if self.scaler is not None:
            self.scaler.scale(loss).backward(); self.scaler.step(self.opt); self.scaler.update()
        else:
            loss.backward(); self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    def window(self, n):
        sync(self.dev); t = time.perf_counter()
        for _ in range(n): self.step()
        sync(self.dev)
        return n * self.a.bs * self.a.seq_len / (time.perf_counter() - t)


def infer_window(model, a, dev, dtype, n):
    x = torch.randint(0, a.vocab, (a.bs, a.seq_len), device=dev)
    model.eval(); model.reset()
    sync(dev); t = time.perf_counter()
    with torch.no_grad(), torch.autocast(dev.type, dtype=dtype, enabled=dtype != torch.float32):
        for _ in range(n): model(x)
    sync(dev)
    model.train(); model.reset()
    return n * a.bs * a.seq_len / (time.perf_counter() - t)


def main():
    a = parse()
    dev = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    t0 = time.time()
    name = torch.cuda.get_device_name(0) if dev.type == 'cuda' else platform.processor() or platform.machine()
    print(f'# AWD-LSTM GPU benchmark {"(--quick)" if a.quick else ""}\n')
    print(f'- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; device: {dev.type} ({name}); '
          f'{os.cpu_count()} CPU cores; load {os.getloadavg()}')
    print(f'- torch {torch.__version__}, fastai {fastai.__version__}, python {platform.python_version()}, '
          f'cudnn {torch.backends.cudnn.version() if dev.type == "cuda" else "-"}')
    print(f'- vocab {a.vocab}, bs {a.bs}, seq_len {a.seq_len}; {a.windows} windows x {a.steps} steps after {a.warmup} warm-up steps')
    ours, theirs = make_models(a, dev)
    print(f'- float32 eval parity, max abs diff of outputs: {parity(ours, theirs, a, dev):.2e}')
    w = our_warnings(ours, a, dev)
    flat = {k: v for r in ours[0].rnns for k, v in r._layout_ok.items()}
    print(f'- warnings from our forward+backward: {len(w)} {w[:2]}; cuDNN flat-weight layout used: {flat or "n/a (no CUDA)"}\n')
    rows = []
    # oneDNN's CPU LSTM cannot build a bf16 training primitive here (fastai's model fails the same way): fp32 on CPU
    for dname in (a.dtypes or ('bf16,fp16' if dev.type == 'cuda' else 'fp32')).split(','):
        dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16, 'fp32': torch.float32}[dname]
        tr = {k: Trainer(m, a, dev, dtype) for k, m in (('ours', ours), ('fastai', theirs))}
        for t in tr.values():
            for _ in range(a.warmup): t.step()
        res = {'ours': [], 'fastai': []}
        for _ in range(a.windows):
            for k in ('ours', 'fastai'): res[k].append(tr[k].window(a.steps))
        inf = {'ours': [], 'fastai': []}
        for _ in range(max(3, a.windows // 2)):
            for k, m in (('ours', ours), ('fastai', theirs)): inf[k].append(infer_window(m, a, dev, dtype, a.steps))
        mo, mf = statistics.median(res['ours']), statistics.median(res['fastai'])
        io, if_ = statistics.median(inf['ours']), statistics.median(inf['fastai'])
        rows.append((dname, mo, mf, io, if_))
        if dev.type == 'cuda': torch.cuda.empty_cache()
    print('| dtype | train tok/s ours | train tok/s fastai | ratio | inference tok/s ours | inference tok/s fastai | ratio |')
    print('|---|---|---|---|---|---|---|')
    for d, mo, mf, io, if_ in rows:
        print(f'| {d} | {mo:,.0f} | {mf:,.0f} | {mo/mf:.2f}x | {io:,.0f} | {if_:,.0f} | {io/if_:.2f}x |')
    if dev.type == 'cuda': print(f'\npeak GPU memory {torch.cuda.max_memory_allocated()/2**30:.1f} GiB')
    print(f'\ntotal {time.time()-t0:.0f} s; load {os.getloadavg()}')


if __name__ == '__main__': main()

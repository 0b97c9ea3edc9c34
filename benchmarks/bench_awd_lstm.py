"""AWD-LSTM on CPU: ulmfit_lib vs fastai 2.8.12 with the same weights, side by side in one run.

    nice -n 10 python benchmarks/bench_awd_lstm.py            # full sizes (a few minutes on 2 cores)
    nice -n 10 python benchmarks/bench_awd_lstm.py --quick    # small sizes, a smoke test

1. language model, fastai's config (emb 400, hid 1152, 3 layers), vocab 60,008, bs=16, seq_len=72:
   training step (forward, flattened cross-entropy + AR/TAR, backward, Adam step) and inference tokens/s;
2. classifier (fastai's classifier config), padded batch 16 x 500 tokens (`pad_input_chunk`, lengths 250-500):
   training step and inference;
3. generation: 50 words after a 20-token prompt, fastai's `LMLearner.predict` vs `generate` with the same
   weights (end to end with fastai's tokenization of the prompt and decoding, and `generate` alone).
Ours and fastai's alternate run by run; the table has the median (and min) of the runs and the ratio of medians.
"""
import argparse, datetime, os, platform, statistics, sys, time, warnings
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch
import torch.nn.functional as F
import pandas as pd
import fastai
import fastai.text.all as fa
from ulmfit_lib.awd_lstm import (AWD_LSTM, get_language_model, get_text_classifier, awd_lstm_lm_config,
                                 generate, ar_tar_loss)

warnings.filterwarnings('ignore', category=UserWarning)


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--quick', action='store_true')
    p.add_argument('--runs', type=int, default=6)
    p.add_argument('--only', default='lm,clas,gen', help='comma-separated subset of lm, clas, gen')
    a = p.parse_args()
    a.vocab, a.bs, a.sl, a.clas_len, a.n_words, a.prompt = 60_008, 16, 72, 500, 50, 20
    a.cfg, a.clas_cfg = None, {}
    if a.quick:
        a.vocab, a.clas_len, a.runs = 2_008, 120, 3
        a.cfg, a.clas_cfg = dict(awd_lstm_lm_config, emb_sz=40, n_hid=96), dict(emb_sz=40, n_hid=96)
    return a


def timed(f):
    t = time.perf_counter(); f(); return time.perf_counter() - t


def side_by_side(fs, runs, warmup=1):
    "Run the callables of `fs` in turn, reversing the order every other run (ABBA); {name: list of seconds}."
    for f in fs.values():
        for _ in range(warmup): f()
    res, items = {k: [] for k in fs}, list(fs.items())
    for r in range(runs):
        for k, f in (items if r % 2 == 0 else items[::-1]): res[k].append(timed(f))
    return res


def train_step(model, opt, x, y, lm=True):
    out = model(x)
    if lm:
        dec, raw, o = out
        loss = F.cross_entropy(dec.view(-1, dec.shape[-1]), y.reshape(-1)) + ar_tar_loss(o, raw, 2., 1.)
    else: loss = F.cross_entropy(out[0], y)
    loss.backward(); opt.step(); opt.zero_grad()


def lm_pair(a):
    "Our LM and fastai's with the same weights, a random batch `(x, y)` of `a.bs` x `a.sl`, and an Adam for each model"
    torch.manual_seed(0)
    ours = get_language_model(AWD_LSTM, a.vocab, config=a.cfg)
    theirs = fa.get_language_model(fa.AWD_LSTM, a.vocab, config=a.cfg)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    g = torch.Generator().manual_seed(0)
    b = torch.randint(0, a.vocab, (a.bs, a.sl + 1), generator=g)
    x, y = b[:, :-1], b[:, 1:]
    opts = {id(m): torch.optim.Adam(m.parameters(), lr=1e-5) for m in (ours, theirs)}
    return ours, theirs, x, y, opts


def bench_lm(a):
    ours, theirs, x, y, opts = lm_pair(a)
    tr = side_by_side({k: (lambda m=m: train_step(m, opts[id(m)], x, y)) for k, m in (('ours', ours), ('fastai', theirs))}, a.runs)
    for m in (ours, theirs): m.eval(); m.reset()
    def infer(m):
        with torch.no_grad(): m(x)
    inf = side_by_side({k: (lambda m=m: infer(m)) for k, m in (('ours', ours), ('fastai', theirs))}, a.runs)
    return tr, inf


def bench_clas(a):
    torch.manual_seed(0)
    ours = get_text_classifier(AWD_LSTM, a.vocab, 2, config=a.clas_cfg)
    theirs = fa.get_text_classifier(fa.AWD_LSTM, a.vocab, 2, config=a.clas_cfg)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    g = torch.Generator().manual_seed(0)
    lens = sorted(torch.randint(a.clas_len // 2, a.clas_len + 1, (a.bs,), generator=g).tolist(), reverse=True)
    lens[0] = a.clas_len
    texts = [torch.randint(2, a.vocab, (n,), generator=g) for n in lens]
    x = torch.stack([t[0] for t in fa.pad_input_chunk([(t,) for t in texts], pad_idx=1, seq_len=72)])
    y = torch.randint(0, 2, (a.bs,), generator=g)
    opts = {id(m): torch.optim.Adam(m.parameters(), lr=1e-5) for m in (ours, theirs)}
    tr = side_by_side({k: (lambda m=m: train_step(m, opts[id(m)], x, y, lm=False)) for k, m in (('ours', ours), ('fastai', theirs))}, a.runs)
    for m in (ours, theirs): m.eval()
    def infer(m):
        with torch.no_grad(): m(x)
    inf = side_by_side({k: (lambda m=m: infer(m)) for k, m in (('ours', ours), ('fastai', theirs))}, a.runs)
    with torch.no_grad(): d = (ours(x)[0] - theirs(x)[0]).abs().max().item()
    return tr, inf, x.shape, d


def bench_generate(a):
    "fastai's LMLearner.predict vs generate: same weights, same vocab size, same prompt ids."
    words = ('this movie was one of the best films i have seen in years and the acting was great but the story '
             'felt a little slow in the middle part').split()
    vocab = fa.defaults.text_spec_tok + sorted(set(words)) + ['the', '.', ',']
    vocab = list(dict.fromkeys(vocab))
    vocab += [f'xxfake{i}' for i in range(a.vocab - len(vocab))]
    df = pd.DataFrame({'text': [' '.join(words)] * 8})
    dls = fa.TextDataLoaders.from_df(df, text_col='text', is_lm=True, text_vocab=vocab, bs=2, seq_len=8, valid_pct=0.25,
                                     seed=0, num_workers=0)
    assert len(dls.vocab) == a.vocab, len(dls.vocab)
    learn = fa.language_model_learner(dls, fa.AWD_LSTM, config=a.cfg, pretrained=False)
    torch.manual_seed(0)
    ours = get_language_model(AWD_LSTM, a.vocab, config=a.cfg)
    learn.model.load_state_dict(ours.state_dict(), strict=True)
    n = len(words)
    while True:   # the longest prefix of the sentence that tokenizes to at most `a.prompt` tokens
        prompt = ' '.join(words[:n]); ids = dls.test_dl([prompt]).items[0]
        if len(ids) <= a.prompt: break
        n -= 1
    num, sep = dls.train_ds.numericalize, dls.train_ds.tokenizer.sep
    def ours_e2e():
        out = generate(ours, dls.test_dl([prompt]).items[0], a.n_words)
        return sep.join(fa.decode_spec_tokens([num.vocab[i] for i in out if num.vocab[i] not in (fa.BOS, fa.PAD)]))
    fs = {'ours': ours_e2e, 'ours (generate only)': lambda: generate(ours, ids, a.n_words),
          'fastai': lambda: learn.predict(prompt, a.n_words, no_bar=True)}
    res = side_by_side(fs, max(3, a.runs // 2))
    torch.manual_seed(1); t1 = ours_e2e()
    torch.manual_seed(1); t2 = learn.predict(prompt, a.n_words, no_bar=True)
    return res, len(ids), t1 == t2


def row(name, unit_n, res, unit='ms'):
    mo, mf = statistics.median(res['ours']), statistics.median(res['fastai'])
    return (f'| {name} | {mo*1e3:,.0f} (min {min(res["ours"])*1e3:,.0f}) | {mf*1e3:,.0f} (min {min(res["fastai"])*1e3:,.0f}) '
            f'| {mf/mo:.2f}x | {unit_n/mo:,.0f} | {unit_n/mf:,.0f} |')


def main():
    a = parse()
    torch.set_num_threads(min(torch.get_num_threads(), os.cpu_count()))
    t0 = time.time()
    print(f'# AWD-LSTM CPU benchmark {"(--quick)" if a.quick else ""}\n')
    print(f'- date {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.platform()}; '
          f'{platform.processor() or platform.machine()}; {os.cpu_count()} cores, torch threads {torch.get_num_threads()}')
    print(f'- torch {torch.__version__}, fastai {fastai.__version__}, python {platform.python_version()}')
    print(f'- load average at start {os.getloadavg()}; {a.runs} runs per cell, alternating ours/fastai\n')
    only = a.only.split(',')
    ntok = a.bs * a.sl
    print('| what | ours ms (min) | fastai ms (min) | speed-up (ratio of medians) | ours tok/s | fastai tok/s |')
    print('|---|---|---|---|---|---|')
    if 'lm' in only:
        lm_tr, lm_inf = bench_lm(a)
        print(row(f'LM train step, vocab {a.vocab:,}, bs {a.bs} x {a.sl}', ntok, lm_tr))
        print(row(f'LM inference, bs {a.bs} x {a.sl}', ntok, lm_inf), flush=True)
    if 'clas' in only:
        cl_tr, cl_inf, shape, d = bench_clas(a)
        print(row(f'classifier train step, padded {shape[0]} x {shape[1]}', shape[0]*shape[1], cl_tr))
        print(row(f'classifier inference, padded {shape[0]} x {shape[1]}', shape[0]*shape[1], cl_inf), flush=True)
    if 'gen' in only:
        gen, plen, same = bench_generate(a)
        print(row(f'generate {a.n_words} words after a {plen}-token prompt (end to end)', a.n_words, gen))
        print(row(f'generate {a.n_words} words, `generate` alone', a.n_words,
                  {'ours': gen['ours (generate only)'], 'fastai': gen['fastai']}))
    if 'clas' in only: print(f'\n- classifier: max abs diff of ours vs fastai logits on this batch: {d:.1e} (rows where fastai\'s BPT3C '
          'bookkeeping drops a review\'s last tokens or pools a padding position differ; see nbs/05_awd_lstm.ipynb)')
    if 'gen' in only: print(f'- generation: same text as fastai with the same seed: {same}')
    print(f'- load average at end {os.getloadavg()}; total {time.time()-t0:.0f} s')


if __name__ == '__main__': main()

"""ulmfit_lib vs fastai 2.8, side by side in one run: (1) LM text generation, `LMLearner.predict` (ours: O(n), carried
hidden state; fastai: re-reads the whole text for every word), (2) LM training throughput of one `fit` epoch (our
learner, loader and AWD-LSTM vs fastai's), same weights, same data. Median of several runs, ratio of medians.

    python benchmarks/bench_ulmfit.py [--runs 3] [--n-docs 300] [--words 25 100]
"""
import argparse, datetime, os, platform, statistics, sys, time, warnings
warnings.filterwarnings('ignore')
import numpy as np
import torch


def med(f, runs):
    ts = []
    for _ in range(runs):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return statistics.median(ts), ts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--runs', type=int, default=3)
    ap.add_argument('--n-docs', type=int, default=300)
    ap.add_argument('--words', type=int, nargs='+', default=[25, 100])
    a = ap.parse_args()
    import fastai, pandas as pd
    from fastai.text.all import (TextDataLoaders, language_model_learner as fa_lml, AWD_LSTM as FA_AWD, LMDataLoader as FA_LMDL,
                                 DataLoaders, awd_lstm_lm_config)
    from ulmfit_lib.basics import read_text
    from ulmfit_lib.data import get_imdb, imdb_sample
    from ulmfit_lib.awd_lstm import AWD_LSTM
    from ulmfit_lib.learner import language_model_learner
    from ulmfit_lib.lm_data import lm_dls_from_ids, TextIds
    from ulmfit_lib.profile import get_profile
    p = get_profile('smoke')
    cfg = p.lm_config()
    path = get_imdb()
    s = imdb_sample(path, n_train=a.n_docs, n_valid=0, seed=1)
    df = pd.DataFrame({'text': [read_text(f) for f in s.train]})
    torch.manual_seed(0)
    fa_dls = TextDataLoaders.from_df(df, text_col='text', is_lm=True, valid_pct=0.1, bs=p.bs, seq_len=p.seq_len, seed=0)
    vocab = list(fa_dls.vocab)
    fa = fa_lml(fa_dls, FA_AWD, config=cfg, pretrained=False, drop_mult=p.lm_drop_mult)
    # our learner on the same numericalized documents and the same weights
    docs = [fa_dls.train_ds[i][0].numpy() for i in range(len(fa_dls.train_ds))]
    ids = np.concatenate(docs).astype(np.int32); offs = np.concatenate([[0], np.cumsum([len(d) for d in docs])])
    ours_dls = lm_dls_from_ids(TextIds.from_ids(ids, offs, vocab=vocab), bs=p.bs, seq_len=p.seq_len, valid_pct=0.1)
    ours = language_model_learner(ours_dls, AWD_LSTM, config=cfg, pretrained=False, drop_mult=p.lm_drop_mult)
    ours.model.load_state_dict(fa.model.state_dict())
    rows = []
    prompt = 'I liked this movie because'
    for n in a.words:
        tf, _ = med(lambda: fa.predict(prompt, n, temperature=0.75, no_bar=True), a.runs)
        to, _ = med(lambda: ours.predict(prompt, n, temperature=0.75), a.runs)
        torch.manual_seed(5); t1 = fa.predict(prompt, n, temperature=0.75, no_bar=True)
        torch.manual_seed(5); t2 = ours.predict(prompt, n, temperature=0.75)
        print(rows[-1] if rows else '', flush=True)
        rows.append((f'predict, {n} words', f'{tf*1000:.0f} ms', f'{to*1000:.0f} ms', f'{tf/to:.1f}x',
                     'same text' if t1 == t2 else 'texts differ'))
    # training: one epoch over the same token stream (fastai's loader and model vs ours)
    n_tok = int(offs[-1] * 0.9)
    fa_train = FA_LMDL([torch.as_tensor(d) for d in docs], bs=p.bs, seq_len=p.seq_len, shuffle=True)
    fa_train.vocab = vocab
    fa2 = fa_lml(DataLoaders(fa_train, fa_dls.valid), FA_AWD, config=cfg, pretrained=False, drop_mult=p.lm_drop_mult)
    def fit(learn):
        with learn.no_bar(), learn.no_logging(): learn.fit(1, 1e-3)
    tf, _ = med(lambda: fit(fa2), a.runs)
    to, _ = med(lambda: fit(ours), a.runs)
    ntf, nto = len(fa2.dls.train) * p.bs * p.seq_len, len(ours.dls.train) * p.bs * p.seq_len
    rows.append((f'LM fit, 1 epoch (~{nto/1000:.0f}k tokens + valid)', f'{ntf/tf:,.0f} tok/s', f'{nto/to:,.0f} tok/s',
                 f'{(nto/to)/(ntf/tf):.2f}x', f'model {cfg["emb_sz"]}/{cfg["n_hid"]}/{cfg["n_layers"]}, vocab {len(vocab)}, bs {p.bs}'))
    print(f'\n## bench_ulmfit ({datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC)\n')
    print(f'{platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, '
          f'torch {torch.__version__} ({torch.get_num_threads()} threads), fastai {fastai.__version__}, '
          f'load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}, median of {a.runs} runs\n')
    print('| what | fastai | ulmfit_lib | speed-up | note |\n|---|---|---|---|---|')
    for r in rows: print('| ' + ' | '.join(r) + ' |')


if __name__ == '__main__': main()

"""Torch threads for `ulmfit-predict`: torch's default (one per core) against one thread and against
`prediction_threads()` (the CLI's default: the cores the load average leaves idle, at least 1), in one process,
rounds alternating the order of the settings.

  python benchmarks/bench_threads.py                  # smoke-size model, 1 review of ~500 tokens and 200 reviews, 5 rounds
  python benchmarks/bench_threads.py --rounds 3 --n 200 --config tiny

Setup: a vocab from 300 IMDb train reviews (`corpus_vocab`, max 6,000 tokens) and a classifier of the `smoke`
profile's size (AWD-LSTM 128/384/2, seq_len 72, max_len 1440; `--config tiny`: 16/32/2, the tests' size) with
random weights, wrapped in a `TextClassifier` (tokenizer processes: the default, one per core). Each round times,
for each setting in turn (`torch.set_num_threads`), `predict_proba` of one real review of about 500 tokens and of
`--n` real test reviews (texts in, probabilities out: tokenizing in worker processes, then the model). Medians over
rounds; the load average (1 min) is printed before each round, since other work on shared cores is what makes
threads wait for each other. Ratios compare settings within the same rounds, so they stay fair under load.
"""
import argparse, datetime, os, platform, statistics, time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--rounds', type=int, default=5)
    ap.add_argument('--n', type=int, default=200)
    ap.add_argument('--config', default='smoke', choices=['smoke', 'tiny'])
    a = ap.parse_args()
    import numpy as np, torch
    from ulmfit_lib.data import get_imdb, imdb_sample
    from ulmfit_lib.basics import read_text
    from ulmfit_lib.corpus import tokenize_corpus
    from ulmfit_lib.numericalize import corpus_vocab
    from ulmfit_lib.awd_lstm import AWD_LSTM, get_text_classifier
    from ulmfit_lib.inference import TextClassifier
    from ulmfit_lib.predict import prediction_threads
    torch_default = torch.get_num_threads()
    ours = prediction_threads()
    print(f'{platform.platform()}, {os.cpu_count()} cores, torch {torch.__version__}, '
          f'{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; torch default {torch_default} threads, '
          f'prediction_threads() {ours} (load average {os.getloadavg()[0]:.1f})')
    path = get_imdb()
    s = imdb_sample(path, n_train=300, n_valid=a.n, seed=3)
    vocab = corpus_vocab(tokenize_corpus(s.train, path=path, progress=False), max_vocab=6000)
    cfg = dict(emb_sz=128, n_hid=384, n_layers=2) if a.config == 'smoke' else dict(emb_sz=16, n_hid=32, n_layers=2)
    torch.manual_seed(0)
    clf = TextClassifier(get_text_classifier(AWD_LSTM, len(vocab), 2, seq_len=72, config=cfg, max_len=1440), vocab, ['neg', 'pos'])
    texts = [read_text(f) for f in s.valid]
    lens = [len(d) for d in clf.numericalize(texts)]
    one = [texts[int(np.argmin([abs(l - 500) for l in lens]))]]
    print(f'model {a.config} {cfg}; one review of {len(clf.numericalize(one)[0])} tokens; {a.n} reviews, {sum(lens)} tokens')
    settings = {f'torch default ({torch_default})': torch_default, 'one thread': 1}
    times = {(k, w): [] for k in settings for w in ('one', 'many')}
    ref = {}
    for r in range(a.rounds):
        order = list(settings)[r % 2:] + list(settings)[:r % 2]          # alternate which setting goes first
        print(f'round {r + 1}: load average {os.getloadavg()[0]:.1f}, order {order}', flush=True)
        for k in order:
            torch.set_num_threads(settings[k])
            for w, tx in (('one', one), ('many', texts)):
                t = time.perf_counter(); p = clf.predict_proba(tx, progress=False); times[k, w].append(time.perf_counter() - t)
                if w in ref: np.testing.assert_allclose(p, ref[w], atol=1e-5)      # same numbers whatever the threads
                else: ref[w] = p
    print(f'\n| setting | 1 review (~500 tokens), median | {a.n} reviews, median | rounds |\n|---|---|---|---|')
    for k in settings:
        print(f'| {k} | {statistics.median(times[k, "one"]):.3f} s | {statistics.median(times[k, "many"]):.2f} s | '
              f'{", ".join(f"{x:.2f}" for x in times[k, "many"])} |')
    base = list(settings)[0]
    for w in ('one', 'many'):
        print(f'{w}: torch default / one thread = {statistics.median(times[base, w]) / statistics.median(times["one thread", w]):.2f}x')


if __name__ == '__main__': main()

"Explanations: a score for every token, batch = alone, integrated gradients' completeness, the deletion test against random on a small real classifier, pictures, bad input."
import json, os, resource, shutil, subprocess, sys
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch
from fastai.interpret import ClassificationInterpretation
from fastai.metrics import accuracy
from ulmfit_lib.basics import read_text
from ulmfit_lib.data import imdb_sample
from ulmfit_lib.tokenize import WordTokenizer
from ulmfit_lib.corpus import tokenize_corpus
from ulmfit_lib.numericalize import corpus_vocab
from ulmfit_lib.clas_data import clas_dls_from_corpus
from ulmfit_lib.awd_lstm import AWD_LSTM
from ulmfit_lib.learner import text_classifier_learner
from ulmfit_lib.inference import save_classifier, load_classifier, TextClassifier, EnsembleClassifier
from ulmfit_lib.interpret import (explain, explain_ids, classifier_tokens, explanation_words, top_words, top_words_json, explanation_html,
                                  write_explanation_html, save_explanations_png, comprehensiveness, delete_tokens,
                                  explain_top_losses, learner_classifier, METHODS)


@pytest.fixture(scope='module')
def real(imdb_path, tmp_path_factory):
    "`(learn, clf, held_out)`: a small AWD-LSTM trained from scratch on 800 real reviews (about 85% accurate), saved and loaded; 120 unseen test reviews."
    threads = torch.get_num_threads()
    torch.set_num_threads(1)               # tiny ops on shared cores: one thread is much faster
    s = imdb_sample(imdb_path, n_train=800, n_valid=100, seed=3)
    trn = tokenize_corpus(s.train, path=imdb_path, progress=False, n_workers=0)
    val = tokenize_corpus(s.valid, path=imdb_path, progress=False, n_workers=0)
    vocab = corpus_vocab(trn, min_freq=3, max_vocab=2000)
    dls = clas_dls_from_corpus(trn, val, vocab, bs=32, seq_len=72)
    torch.manual_seed(0)
    learn = text_classifier_learner(dls, AWD_LSTM, seq_len=72, max_len=300, config=dict(emb_sz=32, n_hid=64, n_layers=1),
                                    pretrained=False, drop_mult=0.2, metrics=accuracy, path=tmp_path_factory.mktemp('l'))
    learn.unfreeze()
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(8, 1e-2)
    with learn.no_bar(): acc = learn.validate()[1]
    assert acc > 0.7, acc                     # it has learnt something to explain
    clf = load_classifier(save_classifier(learn, tmp_path_factory.mktemp('m')/'clf', classes=['neg', 'pos'], tok=WordTokenizer()), n_workers=0)
    seen = {f.name for f in s.valid}
    held_out = [read_text(f) for f in imdb_sample(imdb_path, n_train=2, n_valid=160, seed=11).valid if f.name not in seen][:120]
    yield learn, clf, held_out
    torch.set_num_threads(threads)


@pytest.mark.parametrize('method', METHODS)
def test_every_token_scored_and_the_classifiers_probabilities(real, method):
    learn, clf, texts = real
    ex = explain(clf, texts[:6] + ['Great!', ''], method=method, n_steps=8)
    toks, ids = classifier_tokens(clf, texts[:6] + ['Great!', ''])
    for e, t, d in zip(ex, toks, ids):
        assert e.tokens == t and (e.ids == d).all() and e.scores.shape == (len(t),) and np.isfinite(e.scores).all()
    p = clf.predict_proba(texts[:6] + ['Great!', ''])
    np.testing.assert_allclose([e.prob for e in ex], p.max(1), atol=1e-5)
    assert [e.label for e in ex] == [clf.classes[i] for i in p.argmax(1)]


@pytest.mark.parametrize('method', METHODS)
def test_batch_equals_alone(real, method):
    "Mixed lengths, some past the `max_len` window, batched: each text gets the scores it gets alone."
    learn, clf, texts = real
    mixed = texts[:10] + ['Awful.', 'Great!', '']
    lens = [len(d) for d in clf.numericalize(mixed)]
    assert max(lens) > clf.max_len > min(lens)
    batch = explain(clf, mixed, method=method, bs=16, n_steps=8)
    for t, b in zip(mixed, batch):
        a = explain(clf, [t], method=method, n_steps=8)[0]
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
        assert a.window == b.window and abs(a.prob - b.prob) < 1e-6
    long = [b for b, n in zip(batch, lens) if n > clf.max_len]
    assert long and all(b.window[0] > 0 and (b.scores[:b.window[0]] == 0).all() for b in long)


def test_integrated_gradients_completeness(real):
    "The scores add up to F(text) - F(baseline): within 2% of it on average with 64 steps (midpoint rule)."
    learn, clf, texts = real
    ex = explain(clf, texts[:30], method='ig', n_steps=64)
    gaps, deltas = np.abs([e.gap for e in ex]), np.abs([e.delta for e in ex])
    assert deltas.mean() > 0.1                # a real difference to explain, not 0 = 0
    assert gaps.mean() < 0.02 * deltas.mean(), (gaps.mean(), deltas.mean())
    few = explain(clf, texts[:30], method='ig', n_steps=2)   # and the gap is the integration error: fewer steps, larger gap
    assert np.abs([e.gap for e in few]).mean() > gaps.mean()


@pytest.mark.parametrize('method', METHODS)
def test_deletion_beats_random(real, method):
    "ERASER comprehensiveness on 120 unseen reviews: removing the top-10 tokens hurts the prediction more than 10 random ones (3 seeds)."
    learn, clf, texts = real
    ex = explain(clf, texts, method=method, n_steps=16)
    res = comprehensiveness(clf, ex, ks=(10,), seeds=(0, 1, 2))[10]
    assert res['method'] > 1.5 * res['random'] and res['method'] > 0.02, res
    e = ex[0]
    kept = delete_tokens(e, 10)
    assert len(kept) == len(e.ids) - 10 and e.ids[0] == kept[0]               # removed, not padded; xxbos stays
    top = set(np.argsort(-e.scores[1:])[:10] + 1)
    np.testing.assert_array_equal(kept, np.delete(e.ids, sorted(top)))


def test_ensemble_and_backward_member(real):
    "An ensemble is explained per member and averaged; ig's completeness holds for the ensemble's probability."
    learn, clf, texts = real
    bwd = TextClassifier(clf.model, clf.vocab, clf.classes, tok=clf.tok, n_workers=0, backwards=True)
    ens = EnsembleClassifier([clf, bwd], names=['fwd', 'bwd'])
    ee = explain(ens, texts[:5], n_steps=64)
    np.testing.assert_allclose([e.prob for e in ee], ens.predict_proba(texts[:5]).max(1), atol=1e-5)
    for e in ee[:2]:
        f, b = (explain(m, [t], n_steps=64, target=e.label)[0] for m, t in ((clf, texts[ee.index(e)]), (bwd, texts[ee.index(e)])))
        np.testing.assert_allclose(e.scores, (f.scores + b.scores) / 2, atol=1e-5)
    assert np.abs([e.gap for e in ee]).mean() < 0.02 * np.abs([e.delta for e in ee]).mean()


def test_empty_text(real):
    learn, clf, texts = real
    for m in METHODS:
        e = explain(clf, [''], method=m)[0]
        assert e.tokens == ['xxbos'] and e.label in clf.classes and 0 < e.prob <= 1
        assert explanation_words(e) == [] and top_words(e, 3) == []
    assert explain(clf, []) == []


def test_megabyte_text_bounded(real):
    "A 1 MB review: only the last `max_len` window is kept with gradients; peak memory stays far below the graph of the whole text."
    learn, clf, texts = real
    big = (texts[0] + ' ') * (1_000_000 // (len(texts[0]) + 1) + 1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    e = explain(clf, [big], method='ig', n_steps=4)[0]
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert len(e.tokens) > 100_000 and e.window[1] - e.window[0] <= clf.max_len
    assert (e.scores[:e.window[0]] == 0).all() and np.isfinite(e.scores).all()
    assert grown_mb < 600, grown_mb        # tokens, ids and scores of 250k tokens; the graph of the window only


def test_bad_input(real):
    learn, clf, texts = real
    for kw, msg in [(dict(method='lime'), 'method must be one of'), (dict(n_steps=0), 'n_steps'), (dict(target='maybe'), 'target must be'),
                    (dict(baseline='ones'), 'baseline'), (dict(bs=0), 'bs'), (dict(max_tokens=0), 'max_tokens')]:
        with pytest.raises(ValueError, match=msg): explain(clf, texts[:1], **kw)
    with pytest.raises(TypeError, match='wrap one text in a list'): explain(clf, 'a text')
    with pytest.raises(TypeError, match='TextClassifier'): explain(learn.model, ['a text'])
    for k in (0, -1, 'x', 1.5):
        with pytest.raises((ValueError, TypeError), match='k'): top_words(explain(clf, ['Good.'])[0], k)


def test_words_and_pictures(real, tmp_path):
    learn, clf, texts = real
    e = explain(clf, ['THIS was GREAT!!!! The end <br /> bye'], method='ig', n_steps=8)[0]
    ws = explanation_words(e)
    assert [w for w, _, _ in ws][:4] == ['THIS', 'was', 'GREAT', '!!!!'] and 'The' in [w for w, _, _ in ws]
    np.testing.assert_allclose(sum(s for _, s, _ in ws), e.scores[1:].sum(), atol=1e-5)
    tw = top_words(e, 2)
    assert len(tw) == 2 and tw[0][1] >= tw[1][1] and [json.loads(j) for j in top_words_json([e], 2)] == [tw]
    ex = explain(clf, texts[:3], method='attention')
    f = write_explanation_html(ex + [e], tmp_path/'h.html', trues=['neg', 'pos', 'neg', 'pos'])
    h = f.read_text(encoding='utf-8')
    assert h.startswith('<!DOCTYPE html>') and h.count('<p>') == 4 and 'GREAT' in h and 'true pos' in h
    p = save_explanations_png(ex, tmp_path/'e.png')
    assert p.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and p.stat().st_size > 10_000
    assert sorted(x.name for x in tmp_path.iterdir()) == ['e.png', 'h.html']       # no temporary left


def test_classification_interpretation(real):
    "fastai's ClassificationInterpretation on our learner: top_losses, plot_confusion_matrix, and the top losses explained."
    import matplotlib; matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    learn, clf, texts = real
    with learn.no_bar():
        interp = ClassificationInterpretation.from_learner(learn)
        losses, idx = interp.top_losses(4)
        interp.plot_confusion_matrix()
        ex, trues = explain_top_losses(interp, 4, method='attention')
    plt.close('all')
    assert len(ex) == 4 and losses[0] >= losses[-1]
    for e, t, i in zip(ex, trues, idx):
        x, y = interp.dl.dataset[int(i)]
        assert (e.ids == np.asarray(x)).all() and t == clf.classes[int(y)] and e.label != t   # the worst are mistakes
    lc = learner_classifier(learn)
    assert lc.classes == clf.classes and lc.vocab == clf.vocab


# --- `ulmfit-predict --explain K --html FILE` (ulmfit_lib.predict) ---
ROOT = Path(__file__).resolve().parents[1]


def _cli(args, cwd):
    env = {**os.environ, 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', '')}
    return subprocess.run([sys.executable, '-m', 'ulmfit_lib.predict', *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=600)


@pytest.fixture(scope='module')
def cli_inputs(real, tmp_path_factory):
    "`(folder, files)`: the small trained classifier saved, and four real reviews as files."
    learn, clf, texts = real
    tmp = tmp_path_factory.mktemp('cli')
    folder = save_classifier(learn, tmp/'clf', classes=['neg', 'pos'], tok=WordTokenizer())
    files = []
    for i, t in enumerate(texts[:4]):
        (tmp/f'r{i}.txt').write_text(t, encoding='utf-8'); files.append(tmp/f'r{i}.txt')
    return folder, files


@pytest.fixture(scope='module')
def untrained_cli_inputs(imdb_path, tmp_path_factory):
    "`(folder, files)`: an untrained tiny classifier (flag checks need no trained one) and one real review as a file."
    s = imdb_sample(imdb_path, n_train=16, n_valid=8, seed=1)
    trn = tokenize_corpus(s.train, path=imdb_path, progress=False, n_workers=0)
    val = tokenize_corpus(s.valid, path=imdb_path, progress=False, n_workers=0)
    dls = clas_dls_from_corpus(trn, val, corpus_vocab(trn, min_freq=2), bs=8, seq_len=20)
    learn = text_classifier_learner(dls, AWD_LSTM, seq_len=20, config=dict(emb_sz=16, n_hid=32, n_layers=1), pretrained=False)
    tmp = tmp_path_factory.mktemp('cli_tiny')
    folder = save_classifier(learn, tmp/'clf', classes=['neg', 'pos'])
    (tmp/'r0.txt').write_text(read_text(s.valid[0]), encoding='utf-8')
    return folder, [tmp/'r0.txt']


def test_cli_top_words_column_and_html(real, cli_inputs, tmp_path):
    "`ulmfit-predict MODEL FILES --explain 5 --html FILE`: a top_words JSON column (the library's top words) and every input's heat map."
    learn, clf, texts = real
    folder, files = cli_inputs
    r = _cli([folder, *files, '--explain', 5, '--html', tmp_path/'maps.html', '--out', tmp_path/'o.csv', '--threads', 1, '--n-workers', 0], tmp_path)
    assert r.returncode == 0, r.stderr
    df = pd.read_csv(tmp_path/'o.csv', dtype=str, keep_default_na=False)
    assert df.columns[-1] == 'top_words' and len(df) == 4
    for row, e in zip(df.itertuples(), explain(clf, texts[:4])):
        got, want = json.loads(row.top_words), top_words(e, 5)
        assert row.label == e.label and [w for w, _ in got] == [w for w, _ in want]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=1e-4)
    h = (tmp_path/'maps.html').read_text(encoding='utf-8')
    assert h.startswith('<!DOCTYPE html>') and h.count('<p>') == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ['maps.html', 'o.csv']          # written atomically: no temporary left
    r = _cli([folder, *files[:2], '--threads', 1, '--n-workers', 0], tmp_path)              # without the flag: no column
    assert r.returncode == 0 and 'top_words' not in r.stdout.splitlines()[0]


@pytest.mark.parametrize('k', ['0', '-2', 'x', '1.5'])
def test_cli_bad_explain_exits_2_naming_the_flag(untrained_cli_inputs, tmp_path, k):
    folder, files = untrained_cli_inputs
    r = _cli([folder, files[0], '--explain', k, '--html', tmp_path/'m.html'], tmp_path)
    assert r.returncode == 2 and r.stdout == '', (r.returncode, r.stdout)
    assert len(r.stderr.strip().splitlines()) == 1 and '--explain' in r.stderr, r.stderr
    assert not (tmp_path/'m.html').exists()


def test_cli_html_refused_where_out_would_be(untrained_cli_inputs, tmp_path):
    "`--html` is never an input, a folder, a file in the model folder or the `--out` file: exit 2, one line naming `--html`, nothing written."
    folder, files = untrained_cli_inputs
    before = files[0].read_bytes()
    (tmp_path/'adir').mkdir()
    for html_, extra, msg in [(files[0], [], 'is the input'), (tmp_path/'adir', [], 'is a folder'), (folder/'m.html', [], 'lies in the model folder'),
                              (tmp_path/'x.csv', ['--out', tmp_path/'x.csv'], 'is also --out')]:
        r = _cli([folder, files[0], '--html', html_, *extra], tmp_path)
        assert r.returncode == 2 and r.stdout == '' and len(r.stderr.strip().splitlines()) == 1, r.stderr
        assert '--html' in r.stderr and msg in r.stderr, r.stderr
    assert files[0].read_bytes() == before and not (folder/'m.html').exists() and sorted(p.name for p in tmp_path.iterdir()) == ['adir']

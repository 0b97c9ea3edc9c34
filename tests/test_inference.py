"Shipping the classifier: the safe format in a fresh process, padding-proof batches, threads, bad input, the CLI on real reviews."
import contextlib, json, os, subprocess, sys, threading
from pathlib import Path
import numpy as np
import pytest
import torch
from ulmfit_lib.basics import read_text
from ulmfit_lib.awd_lstm import AWD_LSTM, get_text_classifier
from ulmfit_lib.clas_data import TextDataLoaders
from ulmfit_lib.learner import text_classifier_learner
import ulmfit_lib.inference as inf
from ulmfit_lib.inference import (save_classifier, load_classifier, TextClassifier, inference_batches, CONFIG_FILE,
                                  VOCAB_FILE, WEIGHTS_FILE)

TINY = dict(emb_sz=16, n_hid=32, n_layers=2)
ROOT = Path(__file__).resolve().parents[1]


def _env():
    return {**os.environ, 'PYTHONPATH': str(ROOT) + os.pathsep + os.environ.get('PYTHONPATH', '')}


@pytest.fixture(scope='module')
def trained(small_imdb, tmp_path_factory):
    "`(learn, folder, texts)`: a tiny classifier on real reviews (DataBlock path), saved; texts: unseen real reviews."
    ipath, cache = small_imdb
    dls = TextDataLoaders.from_folder(ipath, valid='test', cache_dir=cache, n_workers=0, bs=8, seq_len=20)
    learn = text_classifier_learner(dls, AWD_LSTM, seq_len=20, config=TINY, pretrained=False, path=tmp_path_factory.mktemp('l'))
    torch.manual_seed(0)
    for m in learn.model.modules():   # non-trivial BatchNorm statistics, as after training
        if isinstance(m, torch.nn.BatchNorm1d): m.running_mean.normal_(); m.running_var.uniform_(0.5, 2)
    folder = save_classifier(learn, tmp_path_factory.mktemp('m')/'clf')
    texts = [read_text(f) for f in sorted((ipath/'unsup').glob('*.txt'))[:12]] + ['', 'Great!']
    return learn, folder, texts


def _alone(model, docs):
    "The model's probabilities for each document run alone (batch of one)."
    model.eval()
    with torch.inference_mode():
        return np.stack([torch.softmax(model(torch.as_tensor(d)[None])[0], -1)[0].numpy() for d in docs])


def test_fresh_process_gives_the_learners_probabilities(trained, tmp_path):
    "A new Python process loads the folder (no learner, nothing unpickled) and predicts what the learner predicts."
    learn, folder, texts = trained
    (tmp_path/'texts.json').write_text(json.dumps(texts))
    code = ("import json, sys, numpy as np; from ulmfit_lib.inference import load_classifier; "
            f"c = load_classifier({str(folder)!r}); print(json.dumps(c.classes)); "
            f"np.save({str(tmp_path/'p.npy')!r}, c.predict_proba(json.loads(open({str(tmp_path/'texts.json')!r}).read()), bs=4))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1]) == ['neg', 'pos']               # class names from the DataBlock
    probs = np.load(tmp_path/'p.npy')
    learn.model.eval()
    expect, _ = learn.get_preds(dl=learn.dls.test_dl(texts))                       # fastai's batched path
    np.testing.assert_allclose(probs, expect.numpy(), atol=1e-5)
    clf = load_classifier(folder)
    docs = clf.numericalize(texts)
    num = learn.dls.train_ds.tls[0].tfms.fs[2]; tok = learn.dls.train_ds.tls[0].tfms.fs[1]
    assert [d.tolist() for d in docs] == [num(tok(t)).tolist() for t in texts]    # the learner's preprocessing
    np.testing.assert_allclose(probs, _alone(learn.model, docs), atol=1e-5)


def test_mixed_lengths_give_each_text_its_alone_output(trained):
    "Texts around the `max_len` window, batched together, get what each gets alone (needs the mod-seq_len grouping)."
    learn, folder, texts = trained
    clf0 = load_classifier(folder)
    torch.manual_seed(1)
    model = get_text_classifier(AWD_LSTM, len(clf0.vocab), 2, seq_len=8, config=TINY, max_len=40).eval()
    clf = TextClassifier(model, clf0.vocab, ['neg', 'pos'], n_workers=0)
    words = ' '.join(texts[:6]).split()
    mixed = [' '.join(words[i:i+n]) for i, n in enumerate([3, 30, 31, 33, 35, 36, 37, 38, 40, 41, 45, 50, 60, 75, 90, 7])]
    lens = [len(d) for d in clf.numericalize(mixed)]
    assert max(lens) > 60 and min(lens) < 20
    np.testing.assert_allclose(clf.predict_proba(mixed, bs=16), _alone(model, clf.numericalize(mixed)), atol=1e-5)


def test_threads_get_what_sequential_calls_get(trained):
    learn, folder, texts = trained
    clf = load_classifier(folder, n_workers=0)
    parts = [texts[i::4] for i in range(4)]
    seq = [clf.predict_proba(p, bs=2) for p in parts]
    got, errs = [[] for _ in range(4)], []
    def run(i):
        try:
            for _ in range(3): got[i].append(clf.predict_proba(parts[i], bs=2))
        except Exception as e: errs.append(e)
    ts = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for t in ts: t.start()
    for t in ts: t.join()
    assert not errs, errs
    for s, g in zip(seq, got):
        for o in g: np.testing.assert_allclose(o, s, atol=1e-6)


def test_bad_texts(trained):
    learn, folder, texts = trained
    clf = load_classifier(folder, n_workers=0)
    for bad, msg in [(['ok', None], 'text 1 is a NoneType'), ([b'x'], 'text 0 is a bytes'), (['a', 'b', 3], 'text 2 is a int'),
                     ('a single string', 'wrap one text in a list')]:
        with pytest.raises(TypeError, match=msg): clf.predict_proba(bad)
    p = clf.predict_proba([''])                                     # an empty review still gets a prediction, as in fastai
    assert p.shape == (1, 2) and abs(p.sum() - 1) < 1e-5
    assert clf.predict_proba([]).shape == (0, 2) and clf.predict([]) == []
    with pytest.raises(ValueError, match='bs must be'): clf.predict_proba(['x'], bs=0)


def test_megabyte_text(trained):
    "A text of 1 MB goes alone (bounded memory: the encoder keeps the last `max_len` outputs only), its prefix in long pieces."
    learn, folder, texts = trained
    clf = load_classifier(folder, n_workers=0)
    big = (texts[0] + ' ') * (1_000_000 // (len(texts[0]) + 1) + 1)
    assert len(big) >= 1_000_000
    assert [len(b) for b in inference_batches([250_000, 250_000, 300, 200], 64, clf.seq_len, clf.max_len)] == [2, 1, 1]
    p = clf.predict_proba([big])
    assert p.shape == (1, 2) and np.isfinite(p).all() and abs(p.sum() - 1) < 1e-5


def test_long_rows_fast_path_equals_the_model(trained):
    "`forward_long` (one row, the prefix in long pieces) gives exactly the model's chunk-by-chunk output."
    torch.manual_seed(2)
    for sl, ml in [(20, 60), (8, 40)]:
        m = get_text_classifier(AWD_LSTM, 100, 3, seq_len=sl, config=TINY, max_len=ml).eval()
        for n in [ml - 1, ml, ml + 1, ml + sl, 3 * ml + 5, 10 * ml + 7]:
            x = torch.randint(2, 100, (1, n))
            with torch.inference_mode():
                np.testing.assert_allclose(inf.forward_long(m, x, piece=sl * (1 + n % 4)).numpy(), m(x)[0].numpy(), atol=1e-6)


def _damage(folder, tmp_path, change):
    import shutil
    d = tmp_path/'damaged'
    shutil.copytree(folder, d)
    change(d)
    return d


class _Evil:
    def __reduce__(self): return (os.system, (f'touch {self.flag}',))


def _v99(d):
    c = json.loads((d/CONFIG_FILE).read_text()); c['format_version'] = 99; (d/CONFIG_FILE).write_text(json.dumps(c))


def _bad_rule(d):
    c = json.loads((d/CONFIG_FILE).read_text()); c['rules'] = ['os.system']; (d/CONFIG_FILE).write_text(json.dumps(c))


def _short_vocab(d): (d/VOCAB_FILE).write_text(json.dumps(['xxunk', 'xxpad']))


@pytest.mark.parametrize('change, exc, msg', [
    (lambda d: (d/WEIGHTS_FILE).unlink(), FileNotFoundError, 'weights.pth is missing'),
    (lambda d: (d/CONFIG_FILE).unlink(), FileNotFoundError, 'config.json is missing'),
    (lambda d: (d/VOCAB_FILE).unlink(), FileNotFoundError, 'vocab.json is missing'),
    (lambda d: (d/'model.pkl').write_bytes(b'x'), ValueError, 'model.pkl is not part of a saved classifier'),
    (_v99, ValueError, r'config.json: format_version 99'),
    (_bad_rule, ValueError, r'config.json: unknown rules'),
    (_short_vocab, ValueError, r'vocab.json: 2 tokens'),
    (lambda d: (d/CONFIG_FILE).write_text('{not json'), ValueError, 'config.json: not valid JSON'),
    (lambda d: (d/WEIGHTS_FILE).write_bytes((d/WEIGHTS_FILE).read_bytes()[:100]), ValueError, 'weights.pth'),
    (lambda d: torch.save({'0.module.encoder.weight': torch.zeros(3, 3)}, d/WEIGHTS_FILE), ValueError, 'weights.pth'),
])
def test_damaged_folder_names_the_file(trained, tmp_path, change, exc, msg):
    learn, folder, texts = trained
    with pytest.raises(exc, match=msg): load_classifier(_damage(folder, tmp_path, change))


def test_pickled_object_in_weights_is_refused_unexecuted(trained, tmp_path):
    learn, folder, texts = trained
    evil = _Evil(); evil.flag = str(tmp_path/'pwned')
    d = _damage(folder, tmp_path, lambda d: torch.save({'x': evil}, d/WEIGHTS_FILE))
    with pytest.raises(ValueError, match='weights.pth'): load_classifier(d)
    assert not (tmp_path/'pwned').exists()


def test_save_never_replaces_a_foreign_folder(trained, tmp_path):
    learn, folder, texts = trained
    (tmp_path/'mine').mkdir(); (tmp_path/'mine'/'keep.txt').write_text('mine')
    with pytest.raises(FileExistsError, match='not written by ulmfit_lib'): save_classifier(learn, tmp_path/'mine')
    assert (tmp_path/'mine'/'keep.txt').read_text() == 'mine'
    save_classifier(learn, tmp_path/'ours'); save_classifier(learn, tmp_path/'ours')      # ours: replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ['mine', 'ours']                # no temporary left


def _cli(args, tmp_path, stdin=None):
    return subprocess.run([sys.executable, '-m', 'ulmfit_lib.inference', *map(str, args)], input=stdin, capture_output=True,
                          text=True, env=_env(), cwd=tmp_path, timeout=300)


def test_cli_on_real_reviews(trained, small_imdb, tmp_path):
    import pandas as pd
    learn, folder, texts = trained
    ipath, _ = small_imdb
    files = sorted((ipath/'test'/'pos').glob('*.txt'))[:3]
    lines = ['A wonderful, moving film.', 'Dull and far too long.']
    r = _cli([folder, *files, '-', '--n-workers', '0'], tmp_path, stdin='\n'.join(lines) + '\n')
    assert r.returncode == 0, r.stderr
    out = pd.read_csv(__import__('io').StringIO(r.stdout))
    assert list(out.columns) == ['text_id', 'label', 'p_neg', 'p_pos']
    assert out.text_id.tolist() == [str(f) for f in files] + ['-:1', '-:2']
    expect = load_classifier(folder).predict_proba([read_text(f) for f in files] + lines)
    np.testing.assert_allclose(out[['p_neg', 'p_pos']].values, expect, atol=2e-6)
    assert out.label.tolist() == [['neg', 'pos'][i] for i in expect.argmax(1)]
    pd.DataFrame({'review': [read_text(f) for f in files], 'name': ['a', 'b', 'c']}).to_csv(tmp_path/'in.csv', index=False)
    r = _cli([folder, '--csv', tmp_path/'in.csv', '--text-col', 'review', '--id-col', 'name', '--out', tmp_path/'o.csv'], tmp_path)
    assert r.returncode == 0 and r.stdout == '', r.stderr
    o = pd.read_csv(tmp_path/'o.csv')
    assert o.text_id.tolist() == ['a', 'b', 'c']
    np.testing.assert_allclose(o[['p_neg', 'p_pos']].values, expect[:3], atol=2e-6)


@pytest.mark.parametrize('case, msg', [
    ('missing', 'no classifier folder'), ('damaged', 'vocab.json is missing'), ('column', "--text-col 'text' is not a column"),
    ('empty', 'the input is empty'), ('nofile', 'input file not found'), ('csv_alone', '--csv and --text-col go together')])
def test_cli_errors_exit_2_with_one_line(trained, tmp_path, case, msg, capsys, monkeypatch):
    learn, folder, texts = trained
    (tmp_path/'in.csv').write_text('review\nfine film\n')
    args = {'missing': [tmp_path/'nothing', '-'], 'damaged': [_damage(folder, tmp_path, lambda d: (d/VOCAB_FILE).unlink()), '-'],
            'column': [folder, '--csv', tmp_path/'in.csv', '--text-col', 'text'], 'empty': [folder, '-'],
            'nofile': [folder, tmp_path/'nope.txt', '--out', tmp_path/'o.csv'], 'csv_alone': [folder, '--csv', tmp_path/'in.csv']}[case]
    monkeypatch.setattr(sys, 'stdin', __import__('io').StringIO('' if case == 'empty' else 'a text\n'))
    assert inf.main([str(a) for a in args]) == 2
    out, err = capsys.readouterr()
    assert out == '' and len(err.splitlines()) == 1 and msg in err, err
    assert not (tmp_path/'o.csv').exists()

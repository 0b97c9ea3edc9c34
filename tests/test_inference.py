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
import ulmfit_lib.predict as cli
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
    return subprocess.run([sys.executable, '-m', 'ulmfit_lib.predict', *map(str, args)], input=stdin, capture_output=True,
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
    assert list(out.columns) == ['text_id', 'label', 'p_neg', 'p_pos', 'empty']     # `empty`: issue 24, item 11
    assert out['empty'].tolist() == [False] * 5
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
    assert cli.main([str(a) for a in args]) == 2
    out, err = capsys.readouterr()
    assert out == '' and len(err.splitlines()) == 1 and msg in err, err
    assert not (tmp_path/'o.csv').exists()


# --- issue 24: the safe format and `ulmfit-predict` against hostile files and careless input ---

def _exit2(r, *needles):
    "The CLI refused with exit 2, nothing on stdout, one line on stderr holding every needle."
    assert r.returncode == 2 and r.stdout in ('', b''), (r.returncode, r.stdout[:300], r.stderr[-2000:])
    err = r.stderr.decode() if isinstance(r.stderr, bytes) else r.stderr
    assert len(err.splitlines()) == 1, err[-2000:]
    for n in needles: assert n in err, err
    return err


def _cli_bytes(args, tmp_path, stdin=b'', limit_mb=None, timeout=300):
    "`_cli` with bytes in and out; `limit_mb`: cap the child's address space (a failing test cannot eat the machine's memory)."
    def cap():
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (limit_mb << 20, limit_mb << 20))
    return subprocess.run([sys.executable, '-m', 'ulmfit_lib.predict', *map(str, args)], input=stdin, capture_output=True,
                          env=_env(), cwd=tmp_path, timeout=timeout, preexec_fn=cap if limit_mb else None)


def _snap(*files): return [(Path(f).read_bytes(), os.stat(f).st_mtime_ns) for f in files]


def _edit_config(change):
    def f(d):
        c = json.loads((d/CONFIG_FILE).read_text()); change(c); (d/CONFIG_FILE).write_text(json.dumps(c))
    return f


def _edit_weights(change):
    def f(d):
        w = torch.load(d/WEIGHTS_FILE, weights_only=True); change(w); torch.save(w, d/WEIGHTS_FILE)
    return f


@pytest.mark.parametrize('case', ['same', 'hardlink', 'symlink', 'csv', 'stdin'])
def test_out_over_an_input_is_refused_and_nothing_changes(trained, tmp_path, case):
    "Item 1: `--out` naming an input (the same inode, through links too, or stdin's file) exits 2 and changes no file."
    learn, folder, texts = trained
    (tmp_path/'in.txt').write_text('A fine film.\nDull.\n'); (tmp_path/'c.csv').write_text('review\nA fine film.\n')
    out = {'same': 'in.txt', 'hardlink': 'hard.txt', 'symlink': 'sym.txt', 'csv': 'c.csv', 'stdin': 'in.txt'}[case]
    if case == 'hardlink': os.link(tmp_path/'in.txt', tmp_path/'hard.txt')
    if case == 'symlink': (tmp_path/'sym.txt').symlink_to(tmp_path/'in.txt')
    before = _snap(tmp_path/'in.txt', tmp_path/'c.csv')
    args = {'csv': [folder, '--csv', 'c.csv', '--text-col', 'review'], 'stdin': [folder, '-']}.get(case, [folder, 'in.txt'])
    with open(tmp_path/'in.txt', 'rb') as f:
        r = subprocess.run([sys.executable, '-m', 'ulmfit_lib.predict', *map(str, args), '--out', out], stdin=f,
                           capture_output=True, text=True, env=_env(), cwd=tmp_path, timeout=300)
    _exit2(r, f'--out {out}', 'the same file')
    assert _snap(tmp_path/'in.txt', tmp_path/'c.csv') == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted({'in.txt', 'c.csv', 'hard.txt' if case == 'hardlink' else 'in.txt',
                                                                 'sym.txt' if case == 'symlink' else 'in.txt'})


def test_stdin_lines_split_at_newline_only(trained, tmp_path):
    "Item 4: separators that `str.splitlines` also cuts at stay inside their line; `\\r\\n` ends a line; ids are line numbers."
    learn, folder, texts = trained
    lines = ['A fine\u2028film.', 'Dull\x0cand\x85long.', 'x\x1cy\x1dz\x1eend', 'Great!']
    assert cli.split_lines('\r\n'.join(lines) + '\r\n') == lines and cli.split_lines('a\n\nb') == ['a', '', 'b'] and cli.split_lines('') == []
    r = _cli_bytes([folder, '-', '--n-workers', '0'], tmp_path, stdin=('\r\n'.join(lines[:2]) + '\n' + '\n'.join(lines[2:])).encode())
    assert r.returncode == 0, r.stderr
    import pandas as pd
    out = pd.read_csv(__import__('io').BytesIO(r.stdout))
    assert out.text_id.tolist() == ['-:1', '-:2', '-:3', '-:4']
    np.testing.assert_allclose(out[['p_neg', 'p_pos']].values, load_classifier(folder).predict_proba(lines), atol=2e-6)


@pytest.mark.parametrize('body, line', [('review,name\nA fine film.,a,EXTRA\nDull.,b\n', 2),      # pandas: first column as index
                                        ('review,name\nA fine film.,a\nDull.\n', 3), ('review,name\n\nA,a\nB,b,c\n', 4)])
def test_ragged_csv_names_the_line(trained, tmp_path, body, line):
    "Item 5: a row with more or fewer fields than the header is an error naming its line, not a silently wrong column."
    learn, folder, texts = trained
    (tmp_path/'c.csv').write_text(body)
    _exit2(_cli([folder, '--csv', 'c.csv', '--text-col', 'review'], tmp_path), 'c.csv', f'line {line}')


def test_huge_seq_len_is_refused_not_looped(trained, tmp_path):
    "Item 6: `seq_len=10**15` in config.json is refused at load; `inference_batches` loops over the lengths present only."
    learn, folder, texts = trained
    d = _damage(folder, tmp_path, _edit_config(lambda c: c.update(seq_len=10**15)))
    _exit2(_cli([d, '-'], tmp_path, stdin='A fine film.\n'), 'config.json', 'seq_len')
    code = 'from ulmfit_lib.inference import inference_batches as b; print([x.tolist() for x in b([3, 5000], 8, 10**15, 100)])'
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=_env(), timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == '[[0], [1]]', r.stderr


def _zero_link(name):
    def f(d): (d/name).unlink(); (d/name).symlink_to('/dev/zero')
    return f


def _fifo(name):
    def f(d): (d/name).unlink(); os.mkfifo(d/name)
    return f


@pytest.mark.parametrize('change, needles', [
    (_edit_config(lambda c: c['arch'].update(lin_ftrs=[10**7])), ['config.json', 'arch.lin_ftrs[0]']),
    (_edit_config(lambda c: c['arch']['config'].update(n_hid=16384, n_layers=4)), ['config.json', 'do not fit']),   # in bounds: meta check
    (_zero_link(CONFIG_FILE), ['config.json', '/dev/zero', 'character device']),
    (_zero_link(VOCAB_FILE), ['vocab.json', '/dev/zero']),
    (_zero_link(WEIGHTS_FILE), ['weights.pth', '/dev/zero']),
    (_fifo(VOCAB_FILE), ['vocab.json', 'FIFO']),
    (lambda d: (d/VOCAB_FILE).write_text(json.dumps(json.loads((d/VOCAB_FILE).read_text())) + ' ' * (33 << 20)), ['vocab.json', 'larger than']),
    (lambda d: ((tmp := d.parent/'outside.json').write_text((d/CONFIG_FILE).read_text()), (d/CONFIG_FILE).unlink(),
                (d/CONFIG_FILE).symlink_to(tmp)), ['config.json', 'outside the classifier folder']),
])
def test_memory_and_hangs_before_checks(trained, tmp_path, change, needles):
    "Item 7: nothing big is allocated or read before the checks (child capped at 3 GB, 60 s); each file named."
    learn, folder, texts = trained
    d = _damage(folder, tmp_path, change)
    _exit2(_cli_bytes([d, '-'], tmp_path, stdin=b'A fine film.\n', limit_mb=3072, timeout=120), *needles)


def _sparse(w): k = next(k for k in w if k.endswith('encoder.weight')); w[k] = w[k].to_sparse()
def _meta(w): k = next(k for k in w if k.endswith('encoder.weight')); w[k] = torch.empty(w[k].shape, device='meta')


@pytest.mark.parametrize('change, needles', [
    (lambda d: (d/CONFIG_FILE).write_text('[' * 200_000 + ']' * 200_000), ['config.json', 'nested too deeply']),
    (_edit_config(lambda c: c['tokenizer'].update(lang='zz')), ['config.json', "tokenizer.lang 'zz'"]),
    (_edit_config(lambda c: c['tokenizer'].update(lang='ja')), ['config.json', "tokenizer.lang 'ja'"]),     # package missing
    (_edit_config(lambda c: c['arch']['config'].update(pad_token=10**6)), ['config.json', 'arch.config.pad_token']),
    (_edit_config(lambda c: c['arch'].update(lin_ftrs=[-5])), ['config.json', 'arch.lin_ftrs[0]']),
    (_edit_config(lambda c: c.update(max_len=5)), ['config.json', 'max_len']),
    (_edit_weights(_meta), ['weights.pth', 'encoder.weight', 'meta']),
    (_edit_weights(_sparse), ['weights.pth', 'encoder.weight', 'sparse']),
])
def test_bad_files_give_one_line_not_a_traceback(trained, tmp_path, change, needles):
    "Item 8: each of these exits 2 with one line naming the file and the field."
    learn, folder, texts = trained
    _exit2(_cli([_damage(folder, tmp_path, change), '-'], tmp_path, stdin='A fine film.\n'), *needles)


@pytest.mark.parametrize('flags, needles', [
    (['--device', 'junk'], ['--device', 'junk']), (['--device', 'cuda'], ['--device', 'CUDA is not available']),
    (['--device', 'meta'], ['--device', 'choose cpu or cuda']),
    (['--out', 'adir'], ['--out adir', 'is a folder']), (['--out', 'afile/o.csv'], ['--out afile/o.csv', 'is not a folder']),
    (['--n-workers', '-1'], ['--n-workers']), (['--threads', '0'], ['--threads']), (['--threads', '-2'], ['--threads']),
    (['--threads', 'many'], ['--threads']), (['--bs', '0'], ['--bs'])])
def test_bad_flags_one_line_before_any_work(trained, tmp_path, flags, needles):
    "Items 8, 11, 12: flags are checked first (the model folder here does not even exist), one line, exit 2."
    if flags == ['--device', 'cuda'] and torch.cuda.is_available(): pytest.skip('CUDA is available here')
    (tmp_path/'adir').mkdir(); (tmp_path/'afile').write_text('x')
    before = _snap(tmp_path/'afile')
    _exit2(_cli([tmp_path/'no_model', '-', *flags], tmp_path, stdin='A fine film.\n'), *needles)
    assert _snap(tmp_path/'afile') == before and list((tmp_path/'adir').iterdir()) == []


def test_threads_flag_runs(trained, tmp_path):
    "Item 12: `--threads 1` gives the same probabilities; the default never asks for more threads than idle cores."
    learn, folder, texts = trained
    r = _cli([folder, '-', '--threads', '1', '--n-workers', '0'], tmp_path, stdin='A fine film.\nDull.\n')
    assert r.returncode == 0, r.stderr
    import pandas as pd
    out = pd.read_csv(__import__('io').StringIO(r.stdout))
    np.testing.assert_allclose(out[['p_neg', 'p_pos']].values, load_classifier(folder).predict_proba(['A fine film.', 'Dull.']), atol=2e-6)
    assert cli.prediction_threads(n_cpus=2, load=5.0) == 1 and cli.prediction_threads(n_cpus=8, load=7.6) == 1
    assert cli.prediction_threads(n_cpus=64, load=0.) == torch.get_num_threads() and cli.prediction_threads(n_cpus=4, load=2.2) == min(2, torch.get_num_threads())


def test_unclear_errors_name_the_input_and_line(trained, tmp_path):
    "Item 9: non-UTF-8 input names the input and its line; an empty CSV says so."
    learn, folder, texts = trained
    (tmp_path/'bad.txt').write_bytes(b'good\nfilm \xff\n'); (tmp_path/'bad.csv').write_bytes(b'review\nok\nno \xfe\n')
    (tmp_path/'empty.csv').write_bytes(b'')
    _exit2(_cli_bytes([folder, 'bad.txt'], tmp_path), 'bad.txt', 'line 2', 'not valid UTF-8')
    _exit2(_cli_bytes([folder, '-'], tmp_path, stdin=b'ok\nalso ok\n\xfe no\n'), '-: line 3', 'not valid UTF-8')
    _exit2(_cli_bytes([folder, '--csv', 'bad.csv', '--text-col', 'review'], tmp_path), 'bad.csv', 'line 3')
    _exit2(_cli_bytes([folder, '--csv', 'empty.csv', '--text-col', 'review'], tmp_path), 'empty.csv is empty')


def _random_bytes(name):
    def f(d): (d/name).write_bytes(bytes(np.random.RandomState(0).randint(0, 256, 4096, dtype=np.uint8)))
    return f


@pytest.mark.parametrize('change, needles, absent', [
    (_edit_config(lambda c: c.update(pad_idx=10**6)), ['config.json', 'pad_idx'], None),
    (lambda d: torch.save({'x': _Evil()}, d/WEIGHTS_FILE), ['weights.pth', 'refused unread'], 'weights_only'),
    (_random_bytes(CONFIG_FILE), ['config.json', 'not UTF-8 text'], None),
    (_random_bytes(WEIGHTS_FILE), ['weights.pth', 'not a readable tensor file'], 'weights_only'),
    (_zero_link(CONFIG_FILE), ['config.json', 'symlink to /dev/zero'], None),
])
def test_unclear_load_errors(trained, tmp_path, change, needles, absent):
    "Item 9: `pad_idx` out of range is caught naming config.json; PyTorch's `weights_only=False` advice never repeated."
    learn, folder, texts = trained
    _Evil.flag = str(tmp_path/'pwned')
    err = _exit2(_cli_bytes([_damage(folder, tmp_path, change), '-'], tmp_path, stdin=b'A fine film.\n', limit_mb=3072), *needles)
    assert absent is None or absent not in err
    assert not (tmp_path/'pwned').exists()


def _dup_key(d):
    t = (d/CONFIG_FILE).read_text(); (d/CONFIG_FILE).write_text(t.replace('{', '{"classes": ["a", "b"], ', 1))


def _nonfinite(x):
    def f(w): k = next(k for k in w if k.endswith('layers.0.2.weight')); w[k][0, 0] = x
    return f


@pytest.mark.parametrize('change, msg', [
    (lambda d: (d/VOCAB_FILE).write_text(json.dumps([(v if i != 7 else json.loads((d/VOCAB_FILE).read_text())[8])
                                                      for i, v in enumerate(json.loads((d/VOCAB_FILE).read_text()))])), r'vocab.json: the token .* appears 2 times'),
    (_edit_config(lambda c: c.update(classes=['pos', 'pos'])), r'config.json: classes has duplicates'),
    (_edit_config(lambda c: c.update(rules={'fix_html': 1})), r'config.json: rules must be a list of str'),
    (_edit_config(lambda c: c['tokenizer'].update(special_toks='xxbos')), r'config.json: tokenizer.special_toks must be a list'),
    (_edit_config(lambda c: c.update(format_version=True)), r'config.json: format_version True'),
    (_edit_config(lambda c: c.update(format='pickle please')), r"config.json: format 'pickle please'"),
    (_dup_key, r"config.json: not valid JSON \(duplicate key 'classes'\)"),
    (_edit_weights(_nonfinite(float('nan'))), r'weights.pth: .*layers.0.2.weight holds NaN'),
    (_edit_weights(_nonfinite(float('inf'))), r'weights.pth: .*layers.0.2.weight holds NaN or infinite'),
])
def test_tampered_files_refused_at_load(trained, tmp_path, change, msg):
    "Item 10: each tampering is refused at load, naming the file."
    learn, folder, texts = trained
    with pytest.raises(ValueError, match=msg): load_classifier(_damage(folder, tmp_path, change))


def test_csv_output_escapes_formulas_and_flags_empty_texts(trained, tmp_path):
    "Item 11: class names cannot inject formulas; empty and blank texts keep a prediction and are flagged `empty`."
    learn, folder, texts = trained
    d = _damage(folder, tmp_path, _edit_config(lambda c: c.update(classes=['=HYPERLINK("http://x")', '@neg'])))
    r = _cli([d, '-', '--n-workers', '0'], tmp_path, stdin='A fine film.\n\n \t \nDull.\n')
    assert r.returncode == 0, r.stderr
    import csv as _csv, io as _io
    rows = list(_csv.reader(_io.StringIO(r.stdout)))
    assert rows[0] == ['text_id', 'label', 'p_=HYPERLINK("http://x")', 'p_@neg', 'empty']
    assert [row[-1] for row in rows[1:]] == ['false', 'true', 'true', 'false']
    assert all(row[1] in ('\'=HYPERLINK("http://x")', "'@neg") for row in rows[1:])
    p = np.array([[float(x) for x in row[2:4]] for row in rows[1:]])
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-5)
    assert cli.csv_safe('-1') == "'-1" and cli.csv_safe('+') == "'+" and cli.csv_safe('pos') == 'pos'

"The `ulmfit-imdb` job: bad input, the data-cache path with a time budget (as on the GPU machine), atomic outputs."
import json, math, os, re, shutil, signal, subprocess, sys, time
from pathlib import Path
import numpy as np
import torch
import pytest
import ulmfit_lib.ulmfit as U
from ulmfit_lib.basics import OWNER_MARKER, current_umask
import ulmfit_lib.stages as S
from ulmfit_lib.ulmfit import main, run_ulmfit
from ulmfit_lib.profile import get_profile
from ulmfit_lib.imdb_data import prepare_imdb, save_data_cache, load_data_cache, IMDbData
from ulmfit_lib.stages import fit_budget

TINY = ['n_unsup=30', 'n_lm=30', 'n_train=30', 'n_valid=20', 'max_vocab=400', 'emb_sz=16', 'n_hid=32', 'bs=8',
        'seq_len=20', 'clas_bs=8', 'clas_epochs=[1,1,0,1]', 'lm1_epochs=2', 'lm2_epochs=2']


def _tiny_profile(**more):
    "The profile the `TINY` flags give (the one `tiny_cache` was made with), with `more` changes."
    kv = {}
    for s in TINY:
        k, v = s.split('='); kv[k] = tuple(json.loads(v)) if v.startswith('[') else json.loads(v)
    return get_profile('smoke', **{**kv, **more})


@pytest.fixture(scope='module')
def tiny_cache(imdb_path, tmp_path_factory):
    d = tmp_path_factory.mktemp('cache')
    assert main(['--profile', 'smoke', '--data-cache', str(d/'imdb'), '--make-cache', '--set', *TINY]) == 0
    return d/'imdb'


def test_unknown_profile(tmp_path, capsys):
    assert main(['--profile', 'huge', '--out', str(tmp_path/'o')]) == 2
    assert "unknown profile 'huge'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown profile 'huge'"): run_ulmfit('huge', out=tmp_path/'o')
    assert not (tmp_path/'o'/'report.json').exists()


def test_unknown_field_and_missing_archive(tmp_path, capsys):
    assert main(['--set', 'n_trian=5', '--out', str(tmp_path/'o')]) == 2
    assert "n_trian" in capsys.readouterr().err
    assert main(['--archive', str(tmp_path/'imdb.tgz'), '--out', str(tmp_path/'o')]) == 2
    assert f'IMDb archive not found: {tmp_path/"imdb.tgz"}' in capsys.readouterr().err
    assert not (tmp_path/'o').exists() or not any((tmp_path/'o').iterdir())


def test_make_cache_needs_dir(capsys):
    assert main(['--make-cache']) == 2
    assert '--data-cache' in capsys.readouterr().err


def test_cache_roundtrip_and_corruption(tiny_cache, tmp_path):
    d = load_data_cache(tiny_cache)
    assert d.counts()['train']['docs'] == 30 and d.counts()['valid']['docs'] == 20
    assert set(np.unique(d.parts['train'][2]).tolist()) == {0, 1}
    assert (d.parts['unsup'][2] == -1).all() and (d.parts['lm'][2] == -1).all()
    assert np.array_equal(d.parts['lm'][0], d.parts['train'][0])               # the same texts ...
    assert sum('ids' in np.load(tiny_cache/f'{k}.npz').files for k in ('lm', 'train')) == 1   # ... stored once
    with pytest.raises(FileNotFoundError, match='not a data cache'): load_data_cache(tmp_path)
    # a truncated part file
    import shutil
    bad = tmp_path/'bad'; shutil.copytree(tiny_cache, bad)
    (bad/'train.npz').write_bytes((bad/'train.npz').read_bytes()[:100])
    with pytest.raises(ValueError, match='not a readable data cache'): load_data_cache(bad)
    # a part that does not match its meta
    bad2 = tmp_path/'bad2'; shutil.copytree(tiny_cache, bad2)
    meta = json.loads((bad2/'meta.json').read_text()); meta['counts']['valid']['docs'] = 21
    (bad2/'meta.json').write_text(json.dumps(meta))
    with pytest.raises(ValueError, match='does not match meta.json'): load_data_cache(bad2)


def test_job_from_cache_with_time_budget(tiny_cache, tmp_path, monkeypatch):
    "What the GPU machine runs: no tokenizer, a data cache, a time budget, maybe no IMDb texts; a complete report comes out."
    def no_texts(*a, **k): raise FileNotFoundError('IMDb archive not found: /nowhere/imdb.tgz')
    monkeypatch.setattr(U, 'imdb_texts', no_texts)
    out = tmp_path/'run'
    assert main(['--profile', 'smoke', '--data-cache', str(tiny_cache), '--time-budget', '40', '--out', str(out),
                 '--device', 'cpu', '--set', *TINY]) == 0
    rep = json.loads((out/'report.json').read_text())
    assert {'profile', 'device', 'data', 'lm', 'classifier', 'total_seconds', 'control'} <= set(rep)
    assert rep['profile'] == 'smoke' and rep['device'].startswith('cpu')
    assert rep['classifier']['n_valid'] == 20 and 0 <= rep['classifier']['accuracy'] <= 1
    assert rep['lm']['perplexity'] > 1 and 0 <= rep['lm']['accuracy'] <= 1
    assert rep['data']['train']['docs'] == 30 and rep['time_budget'] == 40
    assert rep['baseline'] == dict(note='skipped: the IMDb texts could not be read')   # the baseline needs the raw reviews
    assert rep['job_seconds'] < 40 * 2.5   # tiny stages have fixed overheads; the budget is approximate
    names = {p.name for p in out.rglob('*') if p.is_file()}
    assert {'stage1_lm_loss.png', 'stage2_lm_loss.png', 'stage3_clas_loss.png', 'finetuned.pth', 'classifier.pth',
            'general_lm.pth', 'general_lm.pkl'} <= names
    assert not [n for n in names if n.endswith('.tmp')]


def test_label_sweep_needs_the_texts(tiny_cache, tmp_path, monkeypatch):
    def no_texts(*a, **k): raise FileNotFoundError('IMDb archive not found: /nowhere/imdb.tgz')
    monkeypatch.setattr(U, 'imdb_texts', no_texts)
    with pytest.raises(FileNotFoundError, match='/nowhere/imdb.tgz'):
        run_ulmfit(_tiny_profile(), out=tmp_path/'run', data_cache=tiny_cache, device='cpu', labels=[10], log=lambda s: None)
    assert not (tmp_path/'run'/'report.json').exists()


def test_failed_stage_writes_no_report(tiny_cache, tmp_path, monkeypatch):
    def boom(*a, **k): raise RuntimeError('stage 3 broke')
    monkeypatch.setattr(S, 'train_classifier', boom)
    with pytest.raises(RuntimeError, match='stage 3 broke'):
        run_ulmfit(_tiny_profile(), out=tmp_path/'run', data_cache=tiny_cache, device='cpu', log=lambda s: None)
    assert not (tmp_path/'run'/'report.json').exists()


def test_budget_shrinks_schedule(tiny_cache, tmp_path):
    "With a budget far below the planned schedule (50 epochs per LM stage), the LM stages train less."
    p = _tiny_profile(lm1_epochs=50, lm2_epochs=50)     # the cache's data settings (a `tiny` profile would be refused)
    rep = run_ulmfit(p, out=tmp_path/'r', data_cache=tiny_cache, control=False, device='cpu', time_budget=1e-3,
                     log=lambda s: None)
    for r in (rep['lm'], rep['lm']['general']):
        assert r['fraction'] * r['epochs'] < 50, r


@pytest.mark.parametrize('n,e,spb,b,exp', [(10, 1, 1., None, (1.0, 1)), (10, 4, 1., 1e6, (1.0, 4)),
                                            (10, 4, 1., 25, (1.0, 2)), (10, 4, 1., 1, (0.1, 1)), (10, 1, 1., 0, (0.02, 1))])
def test_fit_budget(n, e, spb, b, exp):
    assert fit_budget(n, e, spb, b) == pytest.approx(exp)


# ---- issue 17: nothing lost, nothing silently wrong ----------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
PLOTS = ['stage1_lm_loss', 'stage2_lm_loss', 'stage3_clas_loss']


def _job(*args):
    "The job as a subprocess (`python -m ulmfit_lib.ulmfit`) with this worktree's package and pipes for stdout/stderr."
    env = dict(os.environ, PYTHONPATH=str(REPO), MPLBACKEND='Agg')
    return [sys.executable, '-m', 'ulmfit_lib.ulmfit', '--profile', 'smoke', '--device', 'cpu', *args], env


@pytest.fixture(scope='module')
def piped_run(tiny_cache, tmp_path_factory):
    "One finished run of the job with stdout to a pipe, as in `ulmfit-imdb ... > log.txt`: `(out, stdout, stderr)`."
    out = tmp_path_factory.mktemp('piped')/'run'
    cmd, env = _job('--data-cache', str(tiny_cache), '--out', str(out), '--set', *TINY)
    r = subprocess.run(cmd, capture_output=True, env=env, cwd=out.parent, timeout=600)   # minutes only on a loaded machine
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    return out, r.stdout, r.stderr


def test_log_not_a_terminal(piped_run):
    "No progress-bar frames in a log file: one table row per epoch and the stage summaries."
    out, so, se = piped_run
    assert b'\r' not in so and b'\r' not in se
    assert len(so) < 20_000, len(so)
    lines = so.decode().splitlines()
    rows = [l for l in lines if re.match(r'\d+\s+\d', l)]
    # 2 + 2 LM epochs, classifier and control: 3 phases of one epoch each
    assert len(rows) == 2 + 2 + 3 + 3, lines
    assert sum(l.startswith('epoch') for l in lines) == 1 + 1 + 3 + 3    # fastai's header, once per fit
    for s in ('stage 1:', 'stage 2:', 'classifier:', 'control:', 'report:'): assert any(l.startswith(s) for l in lines), s


def test_plots_show_every_fit(piped_run):
    "The plots hold the fits' own history: a train point per batch, a valid point per epoch, every unfreezing phase."
    out = piped_run[0]
    curves = json.loads((out/'losses.json').read_text())
    assert set(curves) == set(PLOTS)
    for name, epochs in zip(PLOTS, ([2], [2], [1, 1, 1])):
        c = curves[name]
        assert [ph['epochs'] for ph in c['phases']] == epochs
        assert len(c['train']) == sum(ph['epochs'] * ph['batches'] for ph in c['phases']) > len(epochs)
        assert [ph['start'] for ph in c['phases']] == np.cumsum([0] + [ph['epochs'] * ph['batches'] for ph in c['phases']])[:-1].tolist()
        assert len(c['valid']) == sum(epochs)
        xs = [x for x, _ in c['valid']]
        assert xs == sorted(xs) and xs[-1] == len(c['train'])
        assert all(math.isfinite(v) and v > 0 for v in c['train'] + [v for _, v in c['valid']])
        assert (out/f'{name}.png').stat().st_size > 5000


def test_job_writes_the_safe_classifier(piped_run):
    "`OUT/classifier` holds the trained stage-3 classifier in the safe format, named in `report.json`."
    from ulmfit_lib.inference import load_classifier
    from ulmfit_lib.learner import safe_torch_load
    out = piped_run[0]
    rep = json.loads((out/'report.json').read_text())
    assert rep['classifier']['folder'] == 'classifier'            # relative to --out (issue 26)
    assert not any(os.path.isabs(f) for st in ('lm', 'classifier') for f in json.loads((out/'report.json').read_text())[st].get('files', []))
    clf = load_classifier(out/'classifier')
    assert list(clf.classes) == ['neg', 'pos']
    trained = safe_torch_load(next(out.rglob('classifier.pth')), opt_globals=True)
    trained = trained.get('model', trained)
    for k, v in clf.model.state_dict().items(): assert torch.equal(v, trained[k]), k
    p = clf.predict_proba(['A wonderful film, I loved every minute.', 'Dull and far too long.'])
    assert p.shape == (2, 2) and np.allclose(p.sum(1), 1, atol=1e-5)


def test_outputs_have_plain_modes(piped_run, tiny_cache):
    "Outputs get the mode `open()` would give (not mkstemp's 0600): report, plots, the data cache."
    out, um = piped_run[0], current_umask()
    for f in ['report.json', 'losses.json', *[f'{n}.png' for n in PLOTS]]:
        assert (out/f).stat().st_mode & 0o777 == 0o666 & ~um, f
    assert tiny_cache.stat().st_mode & 0o777 == 0o777 & ~um
    for f in tiny_cache.iterdir(): assert f.stat().st_mode & 0o777 == 0o666 & ~um, f
    assert not (out/'running.json').exists()


def test_sigint_exits_130_without_a_mixed_out(piped_run, tiny_cache, tmp_path):
    "Ctrl-C during a run over a finished one: the old report is gone at once, exit 130, one line, no traceback."
    run = tmp_path/'run'; shutil.copytree(piped_run[0], run)
    assert (run/'report.json').exists()
    cmd, env = _job('--data-cache', str(tiny_cache), '--out', str(run), '--set', *TINY, 'lm1_epochs=500')
    # Ctrl-C as from a terminal: the job gets SIGINT's default disposition even when the test runner was started in the
    # background (a non-interactive shell starts background jobs with SIGINT ignored, and Python then never raises KeyboardInterrupt)
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        t = time.monotonic()
        while not (run/'running.json').exists():
            assert p.poll() is None and time.monotonic() - t < 120, 'the run never marked itself as running'
            time.sleep(0.05)
        assert not (run/'report.json').exists()          # gone before any new weights are written
        time.sleep(1.5)
        p.send_signal(signal.SIGINT)
        so, se = p.communicate(timeout=60)
    finally:
        if p.poll() is None: p.kill()
    assert p.returncode == 130, se.decode()[-3000:]
    err = se.decode().strip().splitlines()
    assert 'Traceback' not in se.decode() and err[-1].startswith('ulmfit-imdb: interrupted'), err
    assert not (run/'report.json').exists()
    assert json.loads((run/'running.json').read_text())['status'] == 'interrupted'


def test_interrupt_in_process(tiny_cache, tmp_path, monkeypatch, capsys):
    "KeyboardInterrupt anywhere in the run: exit 130 and one line; our old report is removed, a foreign one refused."
    out = tmp_path/'run'; out.mkdir()
    old = dict(profile='smoke', device='cpu', data={}, lm={}, classifier={}, total_seconds=1.0)
    (out/'report.json').write_text(json.dumps(old))
    def stop(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(S, 'lm_stage', stop)
    args = ['--profile', 'smoke', '--data-cache', str(tiny_cache), '--device', 'cpu', '--set', *TINY]
    try: rc = main(['--out', str(out), *args])
    except KeyboardInterrupt: pytest.fail('KeyboardInterrupt escaped main()')
    assert rc == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith('ulmfit-imdb: interrupted') and str(out) in err[0], err
    assert not (out/'report.json').exists()
    assert json.loads((out/'running.json').read_text())['status'] == 'interrupted'
    # a report.json the library did not write is neither removed nor overwritten
    mine = tmp_path/'mine'; mine.mkdir(); (mine/'report.json').write_text('my notes')
    assert main(['--out', str(mine), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(mine/'report.json') in err[0], err
    assert (mine/'report.json').read_text() == 'my notes' and sorted(os.listdir(mine)) == ['report.json']


def test_cache_never_replaces_a_foreign_folder(tiny_cache, tmp_path, capsys):
    data = load_data_cache(tiny_cache)
    proj = tmp_path/'proj'; proj.mkdir(); (proj/'notes.txt').write_text('mine')
    with pytest.raises(FileExistsError, match=re.escape(str(proj))): save_data_cache(data, proj)
    assert sorted(os.listdir(proj)) == ['notes.txt'] and (proj/'notes.txt').read_text() == 'mine'
    f = tmp_path/'file'; f.write_text('x')
    with pytest.raises(FileExistsError, match=re.escape(str(f))): save_data_cache(data, f)
    assert f.read_text() == 'x'
    assert sorted(p.name for p in tmp_path.iterdir()) == ['file', 'proj']      # no temporary folder left
    # the job refuses before any work, naming the folder
    t = time.monotonic()
    assert main(['--profile', 'smoke', '--data-cache', str(proj), '--out', str(tmp_path/'o'), '--set', *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(proj) in err[0] and time.monotonic() - t < 5
    assert sorted(os.listdir(proj)) == ['notes.txt']
    # the run folder is not a cache folder (the cache would replace it)
    for c in (tmp_path/'o', tmp_path):
        with pytest.raises(ValueError, match='would hold the run folder'):
            run_ulmfit(_tiny_profile(), out=tmp_path/'o', data_cache=c, device='cpu', log=lambda s: None)
    assert not (tmp_path/'o').exists()
    # a cache of ours is replaced, and so is one written before the marker existed (a valid meta.json)
    c = save_data_cache(data, tmp_path/'c')
    assert (c/OWNER_MARKER).is_file()
    save_data_cache(data, c)
    (c/OWNER_MARKER).unlink()
    save_data_cache(data, c)
    assert load_data_cache(c).counts() == data.counts()


def test_cache_of_other_settings_is_refused(tiny_cache, tmp_path, capsys):
    "A cache made with other data settings is never used silently: `ValueError` naming the differing fields."
    p = _tiny_profile(n_train=40, min_freq=2)
    with pytest.raises(ValueError, match=r'min_freq.*n_train|n_train.*min_freq'):
        run_ulmfit(p, out=tmp_path/'o', data_cache=tiny_cache, device='cpu', log=lambda s: None)
    assert not (tmp_path/'o'/'report.json').exists() and not (tmp_path/'o'/'models').exists()
    assert main(['--profile', 'tiny', '--data-cache', str(tiny_cache), '--out', str(tmp_path/'o2')]) == 2
    err = capsys.readouterr().err
    assert 'n_unsup' in err and 'n_train' in err and str(tiny_cache) in err
    # the settings are in meta.json; a cache without them (an older version) cannot be checked: refused too
    meta = json.loads((tiny_cache/'meta.json').read_text())
    assert meta['settings']['n_train'] == 30 and meta['settings']['max_vocab'] == 400
    old = tmp_path/'old'; shutil.copytree(tiny_cache, old)
    del meta['settings']; (old/'meta.json').write_text(json.dumps(meta))
    with pytest.raises(ValueError, match='settings'):
        run_ulmfit(_tiny_profile(), out=tmp_path/'o3', data_cache=old, device='cpu', log=lambda s: None)


def _resave(file, **arrays):
    with np.load(file) as z: d = dict(z)
    np.savez_compressed(file, **{**d, **arrays})


def _zip_damage(file, how):
    raw = bytearray(file.read_bytes()); i = raw.find(b'PK\x01\x02')      # the first member's central directory entry
    if how == 'method': raw[i+10:i+12] = (99).to_bytes(2, 'little')        # -> NotImplementedError
    elif how == 'encrypted': raw[i+8] |= 1                                 # -> RuntimeError
    else:                                                                  # garbage deflate stream -> zlib.error
        n, m = (int.from_bytes(raw[26+k:28+k], 'little') for k in (0, 2))
        raw[30+n+m:34+n+m] = b'\xff' * 4
    file.write_bytes(bytes(raw))


DAMAGES = {
    'meta_list': (lambda d: (d/'meta.json').write_text('[]'), 'meta.json'),
    'meta_parts': (lambda d: (d/'meta.json').write_text(json.dumps({**json.loads((d/'meta.json').read_text()), 'parts': 'valid'})), 'meta.json'),
    'vocab_dict': (lambda d: (d/'vocab.json').write_text('{"a": 1}'), 'vocab.json'),
    'zlib': (lambda d: _zip_damage(d/'valid.npz', 'zlib'), 'valid.npz'),
    'method': (lambda d: _zip_damage(d/'valid.npz', 'method'), 'valid.npz'),
    'encrypted': (lambda d: _zip_damage(d/'valid.npz', 'encrypted'), 'valid.npz'),
    'labels': (lambda d: _resave(d/'valid.npz', labels=np.full(20, 5, np.int8)), 'valid.npz'),
    'labels_float': (lambda d: _resave(d/'valid.npz', labels=np.full(20, 0.5)), 'valid.npz'),
    'offsets': (lambda d: _resave(d/'valid.npz', offsets=np.r_[np.load(d/'valid.npz')['offsets'][:-1][::-1], np.load(d/'valid.npz')['offsets'][-1]]), 'valid.npz'),
    'offsets_2d': (lambda d: _resave(d/'valid.npz', offsets=np.load(d/'valid.npz')['offsets'][None]), 'valid.npz'),
}


@pytest.mark.parametrize('damage', list(DAMAGES))
def test_damaged_cache_is_refused(tiny_cache, tmp_path, damage):
    "Whatever is wrong in a data cache: `ValueError` naming the file, never data used."
    bad = tmp_path/'bad'; shutil.copytree(tiny_cache, bad)
    spoil, fname = DAMAGES[damage]
    spoil(bad)
    with pytest.raises(ValueError, match=re.escape(str(bad/fname))): load_data_cache(bad)


@pytest.fixture
def no_work(monkeypatch):
    def boom(*a, **k): raise AssertionError('work started before the arguments were checked')
    for f in ('run_ulmfit', 'prepare_imdb', 'load_data_cache'): monkeypatch.setattr(U, f, boom)


@pytest.mark.parametrize('args,flag', [
    (['--out', '{file}'], '--out'), (['--out', '{file}/sub'], '--out'), (['--device', 'foo'], '--device'),
    (['--device', 'cuda:x'], '--device'), (['--time-budget', '0'], '--time-budget'), (['--time-budget', '-3'], '--time-budget'),
    (['--time-budget', 'nan'], '--time-budget'), (['--time-budget', 'inf'], '--time-budget'),
    (['--set', 'n_train=abc'], 'n_train'), (['--set', 'n_train=2.5'], 'n_train'), (['--set', 'n_train=-1'], 'n_train'),
    (['--set', 'lm1_lr=abc'], 'lm1_lr'), (['--set', 'lm1_lr=nan'], 'lm1_lr'), (['--set', 'fp16=maybe'], 'fp16'),
    (['--set', 'clas_epochs=[1,2]'], 'clas_epochs'), (['--set', 'clas_epochs=abc'], 'clas_epochs'), (['--set', 'n_train'], 'n_train')])
def test_bad_flags_exit_2(args, flag, tmp_path, capsys, no_work):
    "Bad flags: exit 2 with one line naming the flag (or `--set` field), before any work."
    (tmp_path/'file').write_text('x')
    args = [a.format(file=tmp_path/'file') for a in args]
    assert main(['--profile', 'tiny', '--out', str(tmp_path/'o'), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0], err
    assert (tmp_path/'file').read_text() == 'x' and not (tmp_path/'o').exists()


def test_profile_field_types():
    with pytest.raises(ValueError, match='n_train'): get_profile('tiny', n_train='abc')
    with pytest.raises(ValueError, match='clas_lr'): get_profile('tiny', clas_lr=float('nan'))
    with pytest.raises(ValueError, match='clas_epochs'): get_profile('tiny', clas_epochs=(1, 1))
    assert get_profile('tiny', lm1_lr=1, clas_epochs=[1, 0, 0, 1]).clas_epochs == (1, 0, 0, 1)


# ---- issue 24: the job over foreign files, two jobs into one --out, threads ------------------------------------------

def _snapshot(folder):
    "Every path under `folder` with its bytes and mtime (nanoseconds): what 'no file changed' compares."
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None, p.lstat().st_mtime_ns)
            for p in sorted(folder.rglob('*'))}


def _refused(out, tiny_cache, *more):
    "Run the job into `out` as a subprocess; check it exits 2 with one line on stderr, which it returns."
    cmd, env = _job('--data-cache', str(tiny_cache), '--out', str(out), '--set', *TINY, *more)
    r = subprocess.run(cmd, capture_output=True, env=env, timeout=300)
    err = r.stderr.decode().strip().splitlines()
    assert r.returncode == 2 and len(err) == 1, (r.returncode, r.stderr.decode()[-2000:])
    return err[0]


def test_foreign_files_refused_before_any_work(tiny_cache, tmp_path):
    "A `--out` holding files the job did not write (a classifier folder too): exit 2 naming each, nothing changed."
    out = tmp_path/'proj'
    for f in ('losses.json', 'models/classifier.pth', 'stage1_lm_loss.png', 'classifier/weights.pth', 'notes.txt'):
        (out/f).parent.mkdir(parents=True, exist_ok=True); (out/f).write_bytes(b'mine: ' + f.encode())
    before = _snapshot(out)
    err = _refused(out, tiny_cache)
    for f in ('losses.json', 'models/classifier.pth', 'stage1_lm_loss.png', 'classifier'):
        assert str(out/f) in err, err
    assert 'not written by ulmfit-imdb' in err and 'notes.txt' not in err
    assert _snapshot(out) == before                      # not a byte, not an mtime, no new file


def test_foreign_classifier_folder_refused_alone(tiny_cache, tmp_path):
    "A foreign `classifier/` is refused at the start, not after the training."
    out = tmp_path/'o'; (out/'classifier').mkdir(parents=True); (out/'classifier'/'config.json').write_text('{}')
    before = _snapshot(out)
    assert str(out/'classifier') in _refused(out, tiny_cache)
    assert _snapshot(out) == before


def test_second_job_refused_while_one_runs(tiny_cache, tmp_path):
    "While a run holds `--out` (its lock), a second job there exits 2 with one line naming the pid; nothing changed."
    import fcntl
    out = tmp_path/'o'; out.mkdir()
    (out/'running.json').write_text(json.dumps(dict(status='running', started='now', pid=4242)))
    before = _snapshot(out)
    fd = os.open(out, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)           # what a run holds for its whole length
    try: err = _refused(out, tiny_cache)
    finally: os.close(fd)
    assert 'in use by another ulmfit-imdb run (pid 4242)' in err and str(out) in err, err
    assert _snapshot(out) == before


def test_two_jobs_together_one_refused(tiny_cache, tmp_path):
    "Two jobs started together into one `--out`: one finishes (exit 0), the other is refused (exit 2, one line)."
    out = tmp_path/'o'
    cmd, env = _job('--data-cache', str(tiny_cache), '--out', str(out), '--set', *TINY, '--no-baseline', '--no-control')
    ps = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(2)]
    res = [(p.wait(timeout=900), p.stderr.read().decode()) for p in ps]
    assert sorted(rc for rc, _ in res) == [0, 2], res
    err = next(e for rc, e in res if rc == 2).strip().splitlines()
    assert len(err) == 1 and 'in use by another ulmfit-imdb run' in err[0], err
    rep = json.loads((out/'report.json').read_text())
    assert rep['run_id'] and 'models/classifier.pth' in rep['written']


def test_our_files_are_replaced(piped_run, tiny_cache, tmp_path):
    "A second run into a folder of ours replaces what the first wrote, keeps the user's other files, gets a new run id."
    out = tmp_path/'run'; shutil.copytree(piped_run[0], out)
    (out/'notes.txt').write_text('mine')
    first = json.loads((out/'report.json').read_text())
    cmd, env = _job('--data-cache', str(tiny_cache), '--out', str(out), '--set', *TINY, '--no-baseline', '--no-control')
    r = subprocess.run(cmd, capture_output=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    second = json.loads((out/'report.json').read_text())
    assert second['run_id'] != first['run_id'] and (out/'notes.txt').read_text() == 'mine'


def test_threads_flag(tmp_path, capsys, no_work):
    assert main(['--profile', 'tiny', '--out', str(tmp_path/'o'), '--threads', '0']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and '--threads' in err[0]
    assert U.default_threads(local_ranks=1) >= 1 and U.default_threads(local_ranks=10**6) == 1

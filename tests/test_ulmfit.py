"The `ulmfit-imdb` job: bad input, the corpus-cache path with a time budget (as on the GPU machine), atomic outputs."
import json
from pathlib import Path
import numpy as np
import pytest
import ulmfit_lib.ulmfit as U
from ulmfit_lib.ulmfit import (main, get_profile, prepare_imdb, save_corpus_cache, load_corpus_cache, run_ulmfit,
                               fit_budget, IMDbData)

TINY = ['n_unsup=30', 'n_lm=30', 'n_train=30', 'n_valid=20', 'max_vocab=400', 'emb_sz=16', 'n_hid=32', 'bs=8',
        'seq_len=20', 'clas_bs=8', 'clas_epochs=[1,1,0,1]', 'lm1_epochs=2', 'lm2_epochs=2']


def _tiny_profile():
    kv = {}
    for s in TINY:
        k, v = s.split('='); kv[k] = tuple(json.loads(v)) if v.startswith('[') else json.loads(v)
    return get_profile('smoke', **kv)


@pytest.fixture(scope='module')
def tiny_cache(imdb_path, tmp_path_factory):
    d = tmp_path_factory.mktemp('cache')
    assert main(['--profile', 'smoke', '--corpus-cache', str(d/'imdb'), '--make-cache', '--set', *TINY]) == 0
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
    assert '--corpus-cache' in capsys.readouterr().err


def test_cache_roundtrip_and_corruption(tiny_cache, tmp_path):
    d = load_corpus_cache(tiny_cache)
    assert d.counts()['train']['docs'] == 30 and d.counts()['valid']['docs'] == 20
    assert set(np.unique(d.parts['train'][2]).tolist()) == {0, 1}
    assert (d.parts['unsup'][2] == -1).all() and (d.parts['lm'][2] == -1).all()
    assert np.array_equal(d.parts['lm'][0], d.parts['train'][0])               # the same texts ...
    assert sum('ids' in np.load(tiny_cache/f'{k}.npz').files for k in ('lm', 'train')) == 1   # ... stored once
    with pytest.raises(FileNotFoundError, match='not a corpus cache'): load_corpus_cache(tmp_path)
    # a truncated part file
    import shutil
    bad = tmp_path/'bad'; shutil.copytree(tiny_cache, bad)
    (bad/'train.npz').write_bytes((bad/'train.npz').read_bytes()[:100])
    with pytest.raises(ValueError, match='not a readable corpus cache'): load_corpus_cache(bad)
    # a part that does not match its meta
    bad2 = tmp_path/'bad2'; shutil.copytree(tiny_cache, bad2)
    meta = json.loads((bad2/'meta.json').read_text()); meta['counts']['valid']['docs'] = 21
    (bad2/'meta.json').write_text(json.dumps(meta))
    with pytest.raises(ValueError, match='does not match meta.json'): load_corpus_cache(bad2)


def test_job_from_cache_with_time_budget(tiny_cache, tmp_path):
    "What the GPU machine runs: no tokenizer, a corpus cache, a time budget; a complete report comes out."
    out = tmp_path/'run'
    assert main(['--profile', 'smoke', '--corpus-cache', str(tiny_cache), '--time-budget', '40', '--out', str(out),
                 '--device', 'cpu', '--set', *TINY]) == 0
    rep = json.loads((out/'report.json').read_text())
    assert {'profile', 'device', 'data', 'lm', 'classifier', 'total_seconds', 'control'} <= set(rep)
    assert rep['profile'] == 'smoke' and rep['device'].startswith('cpu')
    assert rep['classifier']['n_valid'] == 20 and 0 <= rep['classifier']['accuracy'] <= 1
    assert rep['lm']['perplexity'] > 1 and 0 <= rep['lm']['accuracy'] <= 1
    assert rep['data']['train']['docs'] == 30 and rep['time_budget'] == 40
    assert rep['job_seconds'] < 40 * 2.5   # tiny stages have fixed overheads; the budget is approximate
    names = {p.name for p in out.rglob('*') if p.is_file()}
    assert {'stage1_lm_loss.png', 'stage2_lm_loss.png', 'stage3_clas_loss.png', 'finetuned.pth', 'classifier.pth',
            'general_lm.pth', 'general_lm.pkl'} <= names
    assert not [n for n in names if n.endswith('.tmp')]


def test_failed_stage_writes_no_report(tiny_cache, tmp_path, monkeypatch):
    def boom(*a, **k): raise RuntimeError('stage 3 broke')
    monkeypatch.setattr(U, 'train_classifier', boom)
    with pytest.raises(RuntimeError, match='stage 3 broke'):
        run_ulmfit(_tiny_profile(), out=tmp_path/'run', corpus_cache=tiny_cache, device='cpu', log=lambda s: None)
    assert not (tmp_path/'run'/'report.json').exists()


def test_budget_shrinks_schedule(tiny_cache, tmp_path):
    "With a budget far below the planned schedule (50 epochs per LM stage), the LM stages train less."
    p = get_profile('tiny', lm1_epochs=50, lm2_epochs=50)
    rep = run_ulmfit(p, out=tmp_path/'r', corpus_cache=tiny_cache, control=False, device='cpu', time_budget=1e-3,
                     log=lambda s: None)
    for r in (rep['lm'], rep['lm']['general']):
        assert r['fraction'] * r['epochs'] < 50, r


@pytest.mark.parametrize('n,e,spb,b,exp', [(10, 1, 1., None, (1.0, 1)), (10, 4, 1., 1e6, (1.0, 4)),
                                            (10, 4, 1., 25, (1.0, 2)), (10, 4, 1., 1, (0.1, 1)), (10, 1, 1., 0, (0.02, 1))])
def test_fit_budget(n, e, spb, b, exp):
    assert fit_budget(n, e, spb, b) == pytest.approx(exp)

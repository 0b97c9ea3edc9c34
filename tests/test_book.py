"""fastbook's chapter 1 IMDb classifier run as written after `from ulmfit_lib.all import *`, on a small real IMDb folder
that `untar_data(URLs.IMDB)` returns here (no internet: WikiText-103 cannot be fetched, so the learner starts from random
weights and says so). One epoch as in the book and `bs=16` (the folder holds 32 training reviews, the shortest of IMDb,
so the book's full-size AWD-LSTM trains in seconds on a CPU); everything else is the book's text, checked with a few asserts.

Chapter 10's code (tokenization, batching, the DataBlock language model and classifier, generation, gradual unfreezing)
is not here: `nbs/10_ulmfit_imdb.ipynb` runs those cells itself, visibly, at the profile's sizes, and CI runs it."""
import math, os, shutil
from pathlib import Path
import pytest


def _shortest(folder, n):
    "The `n` smallest `.txt` files of `folder` (by size, then name: reproducible)."
    with os.scandir(folder) as it: sizes = sorted((e.stat().st_size, e.name) for e in it if e.name.endswith('.txt'))
    return [folder/name for _, name in sizes[:n]]

@pytest.fixture(scope='module')
def short_imdb(imdb_path, tmp_path_factory):
    "IMDb's layout with the 16 shortest reviews of each of `train/pos`, `train/neg` and the 8 of `test/pos`, `test/neg`."
    ipath = tmp_path_factory.mktemp('imdbshort')/'imdb'
    for split, n in (('train', 16), ('test', 8)):
        for lbl in ('neg', 'pos'):
            d = ipath/split/lbl; d.mkdir(parents=True)
            for f in _shortest(imdb_path/split/lbl, n): shutil.copy(f, d)
    yield ipath
    shutil.rmtree(ipath.parent, ignore_errors=True)


@pytest.fixture
def book(short_imdb, monkeypatch, tmp_path):
    "A namespace as after `from ulmfit_lib.all import *`, with `untar_data` serving the small IMDb folder."
    import fastai.data.external as ext
    def untar_data(url, *args, **kwargs):
        if url == ext.URLs.IMDB: return short_imdb
        raise ConnectionError(f'offline test: cannot download {url}')
    monkeypatch.setattr(ext, 'untar_data', untar_data)      # where the learners look for WikiText-103
    monkeypatch.setenv('ULMFIT_CACHE', str(tmp_path/'cache'))
    monkeypatch.chdir(tmp_path)
    ns = {}
    exec('from ulmfit_lib.all import *', ns)
    ns['untar_data'] = untar_data
    return ns


CHAPTER1 = '''
dls = TextDataLoaders.from_folder(untar_data(URLs.IMDB), valid='test', bs=16)
learn = text_classifier_learner(dls, AWD_LSTM, drop_mult=0.5, metrics=accuracy)
learn.fine_tune(1, 1e-2)
'''
CHAPTER1_PREDICT = '''
res = learn.predict("I really liked that movie!")
'''

def test_chapter1(book):
    with pytest.warns(UserWarning, match='WikiText-103'): exec(CHAPTER1, book)
    learn = book['learn']                  # fine_tune: a frozen epoch, then an unfrozen one (the recorder keeps the last fit)
    assert len(learn.dls.train) == 2 and len(learn.recorder.losses) == 2 and len(learn.recorder.values) == 1
    assert len(learn.dls.valid_ds) == 16 and list(learn.dls.vocab[1]) == ['neg', 'pos']
    assert math.isfinite(learn.recorder.values[-1][0]) and all(p.requires_grad for p in learn.model.parameters())
    exec(CHAPTER1_PREDICT, book)
    label, idx, probs = book['res']
    assert label in ('neg', 'pos') and int(idx) == ['neg', 'pos'].index(label)
    assert probs.shape == (2,) and abs(float(probs.sum()) - 1) < 1e-5


def test_chapter10_wikitext103_path(wt103_tiny, imdb_path, tmp_path):
    """Chapter 10 at `tiny` with `ULMFIT_WT103_ARCHIVE` set (issue 22, item 4): stages 1-2 run the book's cells, from an
    archive in fastai's WikiText-103 format put where `untar_data` looks, not our scratch stand-in. fastai's home is a
    temporary folder (its `data/imdb` the extracted archive), so nothing lands in the real one."""
    import subprocess
    arch, _ = wt103_tiny
    home, run = tmp_path/'fastai_home', tmp_path/'run'
    (home/'data').mkdir(parents=True); (home/'data'/'imdb').symlink_to(imdb_path)
    nb = Path(__file__).resolve().parents[1]/'nbs'/'10_ulmfit_imdb.ipynb'
    env = {**os.environ, 'ULMFIT_PROFILE': 'tiny', 'ULMFIT_WT103_ARCHIVE': str(arch), 'FASTAI_HOME': str(home),
           'ULMFIT_RUN_DIR': str(run), 'ULMFIT_IMDB_ARCHIVE': os.environ.get('ULMFIT_IMDB_ARCHIVE', '')}
    r = subprocess.run(['nbdev-test', str(nb), '--n-workers', '1'], capture_output=True, text=True, env=env, timeout=1800,
                       cwd=nb.parent)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    wt = home/'models'/'wt103-fwd'
    assert (wt/'.ulmfit_lib').is_file() and (wt/'lstm_fwd.pth').is_file()       # get_wt103 seeded untar_data's folder
    models = sorted(f.name for f in (run/'imdb'/'models').iterdir())
    assert '1epoch.pth' in models and 'finetuned.pth' in models, models
    assert not any(f.startswith('general_lm') for f in models), models             # no stage 1 trained from scratch

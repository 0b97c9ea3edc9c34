"""fastbook's chapter 1 IMDb classifier run as written after `from ulmfit_lib.all import *`, on a small real IMDb folder
that `untar_data(URLs.IMDB)` returns here (no internet: WikiText-103 cannot be fetched, so the learner starts from random
weights and says so). One epoch as in the book and `bs=16` (the folder holds 32 training reviews, the shortest of IMDb,
so the book's full-size AWD-LSTM trains in seconds on a CPU); everything else is the book's text, checked with a few asserts.

Chapter 10's code (tokenization, batching, the DataBlock language model and classifier, generation, gradual unfreezing)
is not here: `nbs/10_ulmfit_imdb.ipynb` runs those cells itself, visibly, at the profile's sizes, and CI runs it."""
import math, os, shutil
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

import os
from pathlib import Path
import pytest

ARCHIVE = Path(__file__).resolve().parents[1].parent/'shared'/'data'/'imdb.tgz'

@pytest.fixture(scope='session')
def imdb_path():
    "The extracted IMDb folder: $ULMFIT_IMDB_ARCHIVE, else ../shared/data/imdb.tgz, else skip."
    from ulmfit_lib.data import get_imdb
    archive = os.environ.get('ULMFIT_IMDB_ARCHIVE') or (ARCHIVE if ARCHIVE.exists() else None)
    if archive is None: pytest.skip('no local IMDb archive (set ULMFIT_IMDB_ARCHIVE)')
    return get_imdb(archive)


@pytest.fixture(scope='session')
def small_imdb(imdb_path, tmp_path_factory):
    "`(folder, cache)`: 130 real reviews in IMDb's layout (60 train, 40 test, 30 unsup) and a tokenizer cache folder."
    import shutil
    from ulmfit_lib.data import imdb_sample
    tmp = tmp_path_factory.mktemp('imdbsmall'); ipath = tmp/'imdb'
    s = imdb_sample(imdb_path, n_train=60, n_valid=40, n_unsup=30, seed=7)
    for f in s.train + s.valid + s.unsup:
        d = ipath/f.relative_to(imdb_path).parent; d.mkdir(parents=True, exist_ok=True); shutil.copy(f, d)
    yield ipath, tmp/'cache'
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def fastai_small_imdb(small_imdb):
    """`small_imdb` for a test that compares with fastai's folder tokenizer: no `imdb_tok` folder before or after.
    fastai's `tokenize_folder` reuses an existing `<folder>_tok` whatever it counted (`skip_if_exists`): one left by
    another test (other folders, or counted in worker-completion order) would make fastai's side of a parity test wrong."""
    import shutil
    tok = small_imdb[0].parent/f'{small_imdb[0].name}_tok'
    shutil.rmtree(tok, ignore_errors=True)
    yield small_imdb
    shutil.rmtree(tok, ignore_errors=True)


@pytest.fixture(scope='module')
def imdb_texts(imdb_path):
    "400 real reviews (300 labelled + 100 unsup, seeded): the tokenizer and corpus tests' sample."
    from ulmfit_lib.basics import read_text
    from ulmfit_lib.data import imdb_sample
    s = imdb_sample(imdb_path, n_train=200, n_valid=100, n_unsup=100, seed=7)
    return [read_text(f) for f in s.train + s.valid + s.unsup]


@pytest.fixture(scope='session')
def wt103_tiny(imdb_path, tmp_path_factory):
    """`(archive, general learner)`: fastai's WT103 format at a tiny width (3 layers, emb 16, hid 32), trained for 2 epochs
    on 2,000 real `unsup` reviews (vocab 2,000; about 30 s on one core). One epoch on 800 reviews (perplexity 469 on its own
    validation) was not enough to help: the tiny job fine-tuned from it reached 80.3 against 78.2 from scratch."""
    from ulmfit_lib.awd_lstm import awd_lstm_lm_config
    from ulmfit_lib.data import imdb_sample
    from ulmfit_lib.corpus import tokenize_corpus
    from ulmfit_lib.numericalize import corpus_vocab
    from ulmfit_lib.lm_data import lm_dls_from_corpus
    from ulmfit_lib.learner import pretrain_lm
    from ulmfit_lib.pretrained import save_pretrained_archive
    d = tmp_path_factory.mktemp('wt103')
    s = imdb_sample(imdb_path, n_train=0, n_valid=0, n_unsup=2000, seed=3)
    corpus = tokenize_corpus(s.unsup, n_workers=1, cache_dir=d/'tok', progress=False)
    dls = lm_dls_from_corpus(corpus, corpus_vocab(corpus, min_freq=2, max_vocab=2000), bs=64, seq_len=48)
    gen = pretrain_lm(dls, path=d, config=dict(awd_lstm_lm_config, emb_sz=16, n_hid=32, n_layers=3), epochs=2, lr=3e-2)
    return save_pretrained_archive(gen, d/'wt103-fwd.tgz'), gen

"Parity of `ulmfit_lib.numericalize` with fastai (vocab, ids), the corpus fast path, and bad input."
from collections import Counter
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st, HealthCheck
import fastai.text.data as fdata
from ulmfit_lib.numericalize import make_vocab, Numericalize, corpus_vocab, numericalize_corpus
from ulmfit_lib.corpus import TokCorpus
from ulmfit_lib.tokenize import text_spec_tok

_tok = st.sampled_from([f'w{i}' for i in range(40)] + ['xxbos', 'xxmaj', 'xxunk', 'xxfake', 'é', ''])
_docs = st.lists(st.lists(_tok, max_size=30), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None)
@given(docs=_docs, min_freq=st.integers(0, 6), max_vocab=st.one_of(st.none(), st.integers(0, 60)),
       specials=st.one_of(st.none(), st.lists(st.sampled_from(['xxunk', 'xxpad', 'xxbos', 'w1', 'zz']), max_size=5)))
def test_make_vocab_parity(docs, min_freq, max_vocab, specials):
    count = Counter(t for d in docs for t in d)
    assert make_vocab(count, min_freq, max_vocab, specials) == fdata.make_vocab(count, min_freq, max_vocab, specials)


@settings(max_examples=100, deadline=None)
@given(docs=_docs, min_freq=st.integers(1, 4), max_vocab=st.integers(8, 60))
def test_numericalize_parity_and_corpus_path(docs, min_freq, max_vocab):
    ours, theirs = Numericalize(min_freq=min_freq, max_vocab=max_vocab), fdata.Numericalize(min_freq=min_freq, max_vocab=max_vocab)
    ours.setup(docs); theirs.setup(docs)
    assert ours.vocab == theirs.vocab
    for d in docs:
        assert ours(d).tolist() == theirs(d).tolist()
        assert ours.decode(ours(d)) == list(theirs.decode(theirs(d)))
    # the same through a corpus of (first-seen vocab, counts, ids, offsets)
    cv = list(dict.fromkeys(t for d in docs for t in d))
    t2i = {t: i for i, t in enumerate(cv)}
    cids = np.array([t2i[t] for d in docs for t in d], dtype=np.int32)
    c = TokCorpus(cv, np.bincount(cids, minlength=len(cv)), cids, np.cumsum([0] + [len(d) for d in docs]))
    assert corpus_vocab(c, min_freq, max_vocab) == ours.vocab
    ids, offs = numericalize_corpus(c, ours.vocab)
    assert ids.dtype == np.int32 and offs.tolist() == c.offsets.tolist()
    assert [ids[offs[i]:offs[i+1]].tolist() for i in range(len(docs))] == [ours(d).tolist() for d in docs]


def test_given_vocab_quirk():
    "A vocab passed in maps `xxfake` to its last position (fastai's dict), a set-up vocab maps it to 0."
    v = ['xxunk', 'xxpad', 'a'] + ['xxfake'] * 5
    assert Numericalize(vocab=v)(['xxfake', 'a', 'zz']).tolist() == fdata.Numericalize(vocab=v)(['xxfake', 'a', 'zz']).tolist() == [7, 2, 0]
    n = Numericalize(min_freq=1); n.setup([['a', 'a']])
    assert n(['xxfake']).tolist() == [0]


def test_real_imdb_corpus(imdb_path, tmp_path):
    "T's cached `TokCorpus` of 150 real reviews: vocab and ids equal fastai's from its own tokenizer."
    from ulmfit_lib.basics import read_text
    from ulmfit_lib.data import imdb_sample
    from ulmfit_lib.corpus import tokenize_corpus
    from fastai.text.core import tokenize_texts
    files = imdb_sample(imdb_path, n_train=150, n_valid=0, seed=3).train
    corpus = tokenize_corpus(files, n_workers=0, cache_dir=tmp_path, progress=False)
    ftoks = tokenize_texts([read_text(f) for f in files], n_workers=0)
    fnum = fdata.Numericalize(min_freq=2); fnum.setup(ftoks)
    assert corpus_vocab(corpus, min_freq=2) == fnum.vocab
    n = Numericalize(min_freq=2); n.setup(corpus)
    assert n.vocab == fnum.vocab
    ids, offs = numericalize_corpus(corpus, fnum.vocab)
    for i in range(len(files)): assert ids[offs[i]:offs[i+1]].tolist() == fnum(ftoks[i]).tolist()


@pytest.mark.parametrize('ids,msg', [([0, 16], '1 ids outside the vocab of 16 tokens'), ([-1, 3, -2], '2 ids outside'),
                                     (torch.tensor([99]), r'\[99\]')])
def test_decode_out_of_vocab(ids, msg):
    n = Numericalize(vocab=list(text_spec_tok) + list('abcdefg'))
    with pytest.raises(ValueError, match=msg): n.decode(ids)


def test_bad_input():
    with pytest.raises(ValueError, match='no vocab'): Numericalize()(['a'])
    with pytest.raises(ValueError, match='min_freq'): make_vocab(Counter('ab'), min_freq=-1)
    with pytest.raises(ValueError, match='max_vocab'): make_vocab(Counter('ab'), max_vocab=-5)
    assert TokCorpus(['a', 'zz'], [1, 1], np.array([0, 1], np.int32), [0, 2]).remap(['xxunk', 'a']).tolist() == [1, 0]


def test_setup_without_documents():
    "No documents to count: a ValueError, not a vocab of special tokens only."
    for docs in ([], iter([])):
        with pytest.raises(ValueError, match='no documents'): Numericalize().setup(docs)
    n = Numericalize(min_freq=1); n.setup([["a"]]); assert "a" in n.vocab


def test_setup_tells_a_corpus_by_its_type():
    "Token lists that carry some `counts` array are counted as token lists, not taken for a `TokCorpus`."
    class Docs(list): counts = np.array([2, 1])
    n = Numericalize(min_freq=1); n.setup(Docs([['a', 'b'], ['b']]))
    assert n.vocab[len(text_spec_tok):len(text_spec_tok) + 2] == ['b', 'a']

"Classifier batching (`pad_chunk`, `pad_input_chunk`, `SortedDL`) against fastai, its properties, bad input, and the DataBlock integration."
import shutil
from functools import partial
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
import torch
from hypothesis import given, settings, strategies as st
import fastai.text.data as fdata
from fastai.data.transforms import Categorize
from ulmfit_lib.clas_data import pad_chunk, pad_input_chunk, SortedDL, sorted_order, TextBlock, corpus_doc_arrays
from ulmfit_lib.lm_data import TextIds


def _samples(lens, seed=0, n_cls=2):
    rng = np.random.default_rng(seed)
    cat = Categorize(vocab=[str(i) for i in range(n_cls)])
    return [(fdata.TensorText(torch.tensor(rng.integers(2, 300, n))), cat(str(rng.integers(0, n_cls)))) for n in lens]


@settings(max_examples=80, deadline=None)
@given(n=st.integers(0, 40), pad_len_extra=st.integers(0, 50), seq_len=st.integers(1, 20), pad_first=st.booleans(),
       pad_idx=st.integers(0, 3))
def test_pad_chunk_parity(n, pad_len_extra, seq_len, pad_first, pad_idx):
    x = fdata.TensorText(torch.arange(5, 5 + n))
    kw = dict(pad_idx=pad_idx, pad_first=pad_first, seq_len=seq_len, pad_len=n + pad_len_extra)
    ours, theirs = pad_chunk(x, **kw), fdata.pad_chunk(x, **kw)
    assert ours.tolist() == theirs.tolist() and type(ours) is type(theirs)


@settings(max_examples=50, deadline=None)
@given(lens=st.lists(st.integers(1, 120), min_size=1, max_size=40), bs=st.integers(1, 12), seq_len=st.integers(1, 40),
       pad_first=st.booleans())
def test_valid_batches_equal_fastai(lens, bs, seq_len, pad_first):
    s = _samples(lens)
    ours = list(SortedDL(s, bs=bs, seq_len=seq_len, pad_first=pad_first))
    theirs = list(fdata.SortedDL(s, bs=bs, before_batch=fdata.Pad_Chunk(seq_len=seq_len, pad_first=pad_first)))
    assert len(ours) == len(theirs)
    for (a, b), (c, d) in zip(ours, theirs):
        assert a.tolist() == c.tolist() and b.tolist() == d.tolist()
        assert type(a) is type(c) and type(b) is type(d) and a.dtype == c.dtype
    mine, fa = pad_input_chunk(s[:bs], seq_len=seq_len, pad_first=pad_first), fdata.pad_input_chunk(s[:bs], seq_len=seq_len, pad_first=pad_first)
    assert [(p[0].tolist(), int(p[1])) for p in mine] == [(q[0].tolist(), int(q[1])) for q in fa]


@settings(max_examples=50, deadline=None)
@given(lens=st.lists(st.integers(1, 200), min_size=1, max_size=300), bs=st.integers(1, 16), seed=st.integers(0, 2**31),
       drop_last=st.booleans())
def test_shuffled_epoch_properties(lens, bs, seed, drop_last):
    "Each item once per epoch (minus a dropped last batch), the longest in the first batch, lengths sorted in each batch."
    lens = np.array(lens)
    order = sorted_order(lens, bs, shuffle=True, rng=__import__('random').Random(seed))
    assert sorted(order.tolist()) == list(range(len(lens)))
    assert int(np.argmax(lens)) in order[:bs].tolist() or lens[order[0]] == lens.max()
    for i in range(0, len(order), bs): assert (np.diff(lens[order[i:i+bs]]) <= 0).all()
    s = _samples(lens.tolist())
    dl = SortedDL(s, bs=bs, shuffle=True, seed=seed, drop_last=drop_last)
    seen = []
    for x, y in dl:
        assert x.shape[0] == bs or not drop_last
        n_real = (x != 1).sum(1)
        assert (np.diff(n_real.numpy()) <= 0).all() and x.shape[1] == int(n_real.max())
        seen += [tuple(r[r != 1].tolist()) for r in x]
    expect = len(lens) - (len(lens) % bs if drop_last else 0)
    assert len(seen) == expect
    all_docs = sorted(tuple(t[0].tolist()) for t in s)
    if not drop_last: assert sorted(seen) == all_docs


def test_backwards_and_labels_and_get_preds():
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    import torch.nn as nn
    s = _samples([5, 17, 3, 40, 22, 9, 30, 11], seed=4)
    b = list(SortedDL(s, bs=3, seq_len=4, backwards=True))
    f = list(fdata.SortedDL([(fdata.TensorText(x.flip(0)), y) for x, y in s], bs=3, before_batch=fdata.Pad_Chunk(seq_len=4)))
    for (a, c), (d, e) in zip(b, f): assert torch.equal(a, d) and torch.equal(c, e)
    class M(nn.Module):
        def __init__(self): super().__init__(); self.e, self.o = nn.Embedding(300, 4), nn.Linear(4, 2)
        def forward(self, x): return self.o(self.e(x).mean(1))
    trn, val = SortedDL(s, bs=3, shuffle=True, seed=0), SortedDL(s, bs=3)
    learn = Learner(DataLoaders(trn, val), M(), loss_func=nn.CrossEntropyLoss())
    preds, targs = learn.get_preds()                       # reordered to dataset order
    assert preds.shape == (8, 2) and targs.tolist() == [int(y) for _, y in s]


def test_no_labels():
    dl = SortedDL([fdata.TensorText(torch.arange(2, 2 + n)) for n in (3, 5, 1)], bs=2)
    (x,), (x2,) = list(dl)
    assert x.shape == (2, 5) and x2.tolist() == [[2]]


@pytest.mark.parametrize('kw,msg', [(dict(bs=0), 'bs must be an int >= 1, got 0'),
                                    (dict(seq_len=0), 'seq_len must be an int >= 1, got 0'),
                                    (dict(res=[1, 2]), '2 sort keys for 3 documents')])
def test_bad_input(kw, msg):
    with pytest.raises(ValueError, match=msg): SortedDL(_samples([3, 4, 5]), **kw)


def test_bad_input_empty():
    with pytest.raises(ValueError, match='no documents'): SortedDL([])
    with pytest.raises(ValueError, match='no samples'): pad_input_chunk([])
    with pytest.raises(ValueError, match='pad_len=2 is shorter than the text \\(3 tokens\\)'): pad_chunk(torch.arange(3), pad_len=2)


@pytest.mark.parametrize('backwards', [False, True])
def test_datablock_equals_fastai(fastai_small_imdb, backwards):
    "Chapter 10's DataBlocks with our TextBlock: fastai's vocab, validation batches, lengths; backwards included."
    from fastai.data.block import DataBlock, CategoryBlock
    from fastai.data.transforms import get_text_files, parent_label, GrandparentSplitter, RandomSplitter
    ipath, cache = fastai_small_imdb
    items = partial(get_text_files, folders=['train', 'test', 'unsup'])
    def lm(tb): return DataBlock(blocks=tb, get_items=items, splitter=RandomSplitter(0.2, seed=1)).dataloaders(ipath, path=ipath, bs=8, seq_len=30)
    ours = lm(TextBlock.from_folder(ipath, is_lm=True, backwards=backwards, cache_dir=cache, n_workers=0))
    theirs = lm(fdata.TextBlock.from_folder(ipath, is_lm=True, backwards=backwards, n_workers=0))
    assert ours.vocab == theirs.vocab and len(ours.train) == len(theirs.train)
    assert ours.train.buf is ours.valid.buf                          # the corpus fast path
    for (a, b), (c, d) in zip(ours.valid, theirs.valid): assert torch.equal(a, c) and torch.equal(b, d)
    sb = ours.show_batch(max_n=2, show=False)                        # the book's table (fastai 2.8 prints plain lines)
    assert list(sb.columns) == ['text', 'text_'] and len(sb) == 2
    assert sb.text_[0].split()[:-1] == sb.text[0].split()[1:]       # the target: the input one token later
    def clas(tb): return DataBlock(blocks=(tb, CategoryBlock), get_y=parent_label, get_items=partial(get_text_files, folders=['train', 'test']),
                                   splitter=GrandparentSplitter(valid_name='test')).dataloaders(ipath, path=ipath, bs=8, seq_len=20)
    oc = clas(TextBlock.from_folder(ipath, vocab=ours.vocab, backwards=backwards, cache_dir=cache, n_workers=0))
    tc = clas(fdata.TextBlock.from_folder(ipath, vocab=ours.vocab, backwards=backwards, n_workers=0))
    assert len(oc.valid) == len(tc.valid) == 5 and len(oc.train) == len(tc.train)
    for (a, b), (c, d) in zip(oc.valid, tc.valid):
        assert torch.equal(a, c) and torch.equal(b, d)
    assert oc.vocab[0] == ours.vocab and list(oc.vocab[1]) == ['neg', 'pos']


def test_datablock_test_dl_and_new_texts(small_imdb):
    "Files outside the corpus (test_dl) are tokenized one by one and batched the same way."
    from fastai.data.block import DataBlock, CategoryBlock
    from fastai.data.transforms import get_text_files, parent_label, GrandparentSplitter
    ipath, cache = small_imdb
    dls = DataBlock(blocks=(TextBlock.from_folder(ipath, cache_dir=cache, n_workers=0, min_freq=1), CategoryBlock), get_y=parent_label,
                    get_items=partial(get_text_files, folders=['train', 'test']),
                    splitter=GrandparentSplitter(valid_name='test')).dataloaders(ipath, path=ipath, bs=8)
    texts = ['This movie was great!', 'Terrible. Just terrible, a waste of two hours of my life.']
    tdl = dls.test_dl(texts)
    (x,), = list(tdl)
    tok = dls.train_ds.tls[0].tfms.fs[1]
    num = dls.train_ds.tls[0].tfms.fs[2]
    expect = [num(tok(t)) for t in texts]
    assert x.shape == (2, max(len(e) for e in expect))
    m = max(len(e) for e in expect)                       # sorted longest first, padded as pad_chunk does
    assert x[0].tolist() == expect[1].tolist() and x[1].tolist() == pad_chunk(expect[0], pad_len=m, seq_len=72).tolist()
    buf, starts, lens = corpus_doc_arrays(dls.valid_ds)
    assert len(lens) == 40 and lens.tolist() == [len(dls.valid_ds[i][0]) for i in range(40)]


def test_from_arrays_and_labels():
    "The array path engineer L uses: `SortedDL(arrays=(ids, starts, lens), labels=...)`, no dataset."
    ids = np.arange(2, 2 + 30, dtype=np.int32); starts, lens = np.array([0, 5, 12, 20]), np.array([5, 7, 8, 10])
    dl = SortedDL(arrays=(ids, starts, lens), labels=[0, 1, 1, 0], bs=2, seq_len=4)
    (x1, y1), (x2, y2) = list(dl)
    assert x1.shape == (2, 10) and y1.tolist() == [0, 1] and x1[0].tolist() == list(range(22, 32))
    assert x1[1].tolist() == list(range(14, 22)) + [1, 1] and y2.tolist() == [1, 0]   # 2 pads < seq_len: after the text
    with pytest.raises(ValueError, match='3 labels for 4 documents'): SortedDL(arrays=(ids, starts, lens), labels=[0, 1, 1])


def _imdb_df(ipath):
    from fastai.data.transforms import get_text_files, parent_label
    from ulmfit_lib.basics import read_text
    files = get_text_files(ipath, folders=['train', 'test'])
    return pd.DataFrame({'label': [parent_label(f) for f in files], 'title': [f.stem for f in files],
                         'text': [read_text(f) for f in files], 'is_valid': [f.parent.parent.name == 'test' for f in files]})


def _same_batches(dl1, dl2):
    assert len(dl1) == len(dl2)
    for b1, b2 in zip(dl1, dl2):
        assert len(b1) == len(b2) and all(torch.equal(u, v) for u, v in zip(b1, b2))


@pytest.mark.parametrize('is_lm,valid_pct', [(False, None), (True, 0.2)])
def test_textdataloaders_from_folder_equals_fastai(fastai_small_imdb, monkeypatch, is_lm, valid_pct):
    "Chapter 1's `TextDataLoaders.from_folder`: fastai's vocab and validation batches (fastai tokenizing in order)."
    from ulmfit_lib.clas_data import TextDataLoaders
    ipath, cache = fastai_small_imdb
    orig = fdata.TextBlock.from_folder.__func__       # fastai's folder tokenizer counts in worker-completion order: make it sequential
    monkeypatch.setattr(fdata.TextBlock, 'from_folder', classmethod(lambda c, *a, **k: orig(c, *a, n_workers=0, **k)))
    kw = dict(valid='test', bs=8, is_lm=is_lm, valid_pct=valid_pct, seed=5)
    ours = TextDataLoaders.from_folder(ipath, cache_dir=cache, n_workers=0, **kw)
    theirs = fdata.TextDataLoaders.from_folder(ipath, **kw)
    assert ours.vocab == theirs.vocab if is_lm else (ours.vocab[0] == theirs.vocab[0] and list(ours.vocab[1]) == list(theirs.vocab[1]))
    assert len(ours.train) == len(theirs.train)
    _same_batches(ours.valid, theirs.valid)


@pytest.mark.parametrize('is_lm', [False, True])
def test_textdataloaders_from_df_equals_fastai(small_imdb, is_lm):
    "`from_df` with two text columns (fields marked, as fastai): the tokenized frame, vocab and batches are fastai's."
    from ulmfit_lib.clas_data import TextDataLoaders
    ipath, cache = small_imdb
    df = _imdb_df(ipath)
    kw = dict(text_col=['title', 'text'], label_col='label', valid_col='is_valid', bs=8, is_lm=is_lm, seq_len=24)
    ours = TextDataLoaders.from_df(df, cache_dir=cache, **kw)
    theirs = fdata.TextDataLoaders.from_df(df, **kw)
    assert (ours.vocab if is_lm else ours.vocab[0]) == (theirs.vocab if is_lm else theirs.vocab[0])
    oi, ti = ours.train_ds.items, theirs.train_ds.items
    assert list(oi.columns) == list(ti.columns) == ['label', 'is_valid', 'text', 'text_length']
    assert [list(t) for t in oi['text']] == [list(t) for t in ti['text']] and oi['text'].iloc[0][:4] == ['xxbos', 'xxfld', '1', oi['text'].iloc[0][3]]
    assert oi['text_length'].tolist() == ti['text_length'].tolist()
    _same_batches(ours.valid, theirs.valid)
    assert len(ours.train) == len(theirs.train)


def test_textdataloaders_from_csv_and_test_dl(small_imdb, tmp_path):
    "`from_csv` reads what `from_df` takes; new raw texts go through `test_dl` tokenized like the frame's."
    from ulmfit_lib.clas_data import TextDataLoaders
    from ulmfit_lib.tokenize import tokenize1
    ipath, cache = small_imdb
    df = _imdb_df(ipath)[['label', 'text', 'is_valid']]
    df.to_csv(tmp_path/'texts.csv', index=False)
    a = TextDataLoaders.from_csv(tmp_path, 'texts.csv', text_col='text', label_col='label', valid_col='is_valid', bs=8, cache_dir=cache)
    b = TextDataLoaders.from_df(df, text_col='text', label_col='label', valid_col='is_valid', bs=8, cache_dir=cache)
    assert a.vocab[0] == b.vocab[0]
    _same_batches(a.valid, b.valid)
    (x,), = list(a.test_dl(['What a wonderful film.']))
    o2i = {w: i for i, w in enumerate(a.vocab[0])}
    assert x[0].tolist() == [o2i.get(t, 0) for t in tokenize1('What a wonderful film.')]


def test_textdataloaders_bad_input(small_imdb):
    from ulmfit_lib.clas_data import TextDataLoaders
    ipath, cache = small_imdb
    df = _imdb_df(ipath)
    with pytest.raises(FileNotFoundError, match="valid"): TextDataLoaders.from_folder(ipath, cache_dir=cache, n_workers=0)
    with pytest.raises(FileNotFoundError, match='no such folder'): TextDataLoaders.from_folder(ipath/'nope', valid_pct=0.2)
    with pytest.raises(KeyError, match="text columns \\['review'\\]"): TextDataLoaders.from_df(df, text_col='review', label_col='label')
    with pytest.raises(KeyError, match="label columns \\['sentiment'\\]"): TextDataLoaders.from_df(df, text_col='text', label_col='sentiment')
    with pytest.raises(KeyError, match="validation column \\['valid'\\]"):
        TextDataLoaders.from_df(df, text_col='text', label_col='label', valid_col='valid')
    with pytest.raises(KeyError, match="label columns \\[7\\]"): TextDataLoaders.from_df(df, text_col=2, label_col=7)


def _batches(dl): return [[(o.tolist(), type(o).__name__) for o in b] for b in dl]


@settings(max_examples=30, deadline=None)
@given(lens=st.lists(st.integers(1, 60), min_size=1, max_size=30), bs=st.integers(1, 8), pad_idx=st.integers(0, 3),
       pad_first=st.booleans())
def test_callers_before_batch_is_honoured(lens, bs, pad_idx, pad_first):
    "fastai's `pad_input` (re-exported) or any other `before_batch`: the batches fastai's `SortedDL` gives, not our chunk padding."
    from ulmfit_lib.clas_data import pad_input, Pad_Input
    assert pad_input is fdata.pad_input and Pad_Input is fdata.Pad_Input
    s = _samples(lens)
    kw = dict(bs=bs, before_batch=partial(pad_input, pad_idx=pad_idx, pad_first=pad_first))
    assert _batches(SortedDL(s, **kw)) == _batches(fdata.SortedDL(s, **kw))


def test_callers_create_batch_is_honoured():
    s = _samples([5, 17, 3, 40, 22, 9, 30, 11], seed=2)
    def collate(b): return (torch.stack([pad_chunk(x, pad_len=40, seq_len=8) for x, _ in b]), torch.tensor([int(y) + 10 for _, y in b]))
    kw = dict(bs=3, create_batch=collate)
    ours, theirs = _batches(SortedDL(s, **kw)), _batches(fdata.SortedDL(s, **kw))
    assert ours == theirs and all(v >= 10 for b in ours for v in b[1][0])
    dl = SortedDL(s, **kw).new(shuffle=False)           # `new` keeps the caller's function
    assert _batches(dl) == theirs
    # our own Pad_Chunk, alone, still takes the one-scatter path
    assert SortedDL(s, bs=3, before_batch=fdata.Pad_Chunk(seq_len=8)).fast and not SortedDL(s, **kw).fast


def test_clas_dls_from_ids_reads_raw_texts_and_empties():
    "The ids path keeps its tokenizer and vocab: `test_dl` of raw texts, `decode` to class names, `new_empty` for export."
    from ulmfit_lib.clas_data import clas_dls_from_ids
    vocab = ['xxunk', 'xxpad', 'xxbos', 'xxeos', 'xxfld', 'xxrep', 'xxwrep', 'xxup', 'xxmaj', 'this', 'movie', 'is', 'good', '.']
    vocab += ['xxfake'] * (-len(vocab) % 8)
    rng = np.random.default_rng(0)
    lens = rng.integers(3, 12, 20); ids = rng.integers(9, 14, lens.sum()); offs = np.concatenate([[0], np.cumsum(lens)])
    y = np.arange(20) % 2
    ds = TextIds.from_ids(ids, offs, y, vocab, ['neg', 'pos'])
    dls = clas_dls_from_ids(ds, ds, bs=4)
    (x,) = dls.test_dl(['This movie is good.', 'Bad']).one_batch()
    assert x.tolist() == [[2, 8, 9, 10, 11, 12, 13], [2, 8, 0, 1, 1, 1, 1]]   # 'Bad': `xxmaj` and `xxunk` (not in the vocab)
    empty = dls.new_empty()
    assert len(empty.train) == 0 and len(empty.valid) == 0 and empty.valid.dataset.classes == ['neg', 'pos']
    assert empty.test_dl(['good']).one_batch()[0].tolist() == [[2, 12]]
    assert dls.valid.dataset.decode((torch.tensor([2, 9]), torch.tensor(1))) == ('xxbos this', 'pos')
    with pytest.raises(ValueError, match='valid has label 2: not one of 2 classes'):
        clas_dls_from_ids(ds, TextIds.from_ids(ids, offs, y + 1, vocab), bs=4)
    with pytest.raises(TypeError, match='train must be a labelled TextIds'): clas_dls_from_ids((ids, offs, y), ds)
    with pytest.raises(TypeError, match='valid must be a labelled TextIds'): clas_dls_from_ids(ds, TextIds.from_ids(ids, offs, vocab=vocab))
    with pytest.raises(ValueError, match='no documents'): SortedDL([])   # only loaders made by `new` may be empty


def test_clas_dls_from_ids_backwards():
    "`clas_dls_from_ids(..., backwards=True)`: the same batches with each review reversed (pads stay where they are)."
    from ulmfit_lib.clas_data import clas_dls_from_ids
    rng = np.random.default_rng(0)
    lens = rng.integers(3, 12, 10)
    ids, offs, y = rng.integers(2, 40, lens.sum()), np.r_[0, np.cumsum(lens)], rng.integers(0, 2, 10)
    vocab = [f'w{i}' for i in range(40)]
    ds = TextIds.from_ids(ids, offs, y, vocab)
    fwd, bwd = (clas_dls_from_ids(ds, ds, bs=4, seq_len=5, backwards=b) for b in (False, True))
    assert bwd.train.backwards and bwd.valid.backwards and not fwd.valid.backwards
    for (xf, yf), (xb, yb) in zip(fwd.valid, bwd.valid):
        assert torch.equal(yf, yb)
        for rf, rb in zip(xf, xb): assert rb[rb != 1].tolist() == rf[rf != 1].tolist()[::-1]

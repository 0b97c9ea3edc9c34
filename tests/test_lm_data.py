"`LMDataLoader`: every batch equals fastai's, stream properties (hypothesis), backwards, fastai `Learner` integration, bad input."
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
import fastai.text.data as fdata
from ulmfit_lib.lm_data import LMDataLoader, docs_to_arrays

_lens = st.lists(st.integers(0, 60), min_size=1, max_size=15)


def _docs(lens, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 500, n) for n in lens]


def _fastai(docs, **kw):
    return [(x.tolist(), y.tolist()) for x, y in fdata.LMDataLoader([fdata.LMTensorText(torch.tensor(d, dtype=torch.long)) for d in docs], **kw)]


@settings(max_examples=120, deadline=None)
@given(lens=_lens, bs=st.integers(1, 20), seq_len=st.integers(1, 30), backwards=st.booleans())
def test_batches_equal_fastai(lens, bs, seq_len, backwards):
    docs = _docs(lens)
    if sum(lens) - 1 < bs:
        with pytest.raises(ValueError, match=f'cannot fill bs={bs} rows'): LMDataLoader(docs, bs=bs, seq_len=seq_len)
        return
    dl = LMDataLoader(docs, bs=bs, seq_len=seq_len, backwards=backwards)
    ours = [(x.tolist(), y.tolist()) for x, y in dl]
    theirs = _fastai([d[::-1].copy() for d in docs] if backwards else docs, bs=bs, seq_len=seq_len)
    assert ours == theirs and len(dl) == len(ours) > 0
    for x, y in dl: assert type(x) is fdata.LMTensorText and x.dtype == torch.long


@settings(max_examples=80, deadline=None)
@given(lens=_lens.filter(lambda l: sum(l) > 25), bs=st.integers(1, 8), seq_len=st.integers(1, 12), seed=st.integers(0, 2**31))
def test_shuffled_epoch_reads_the_stream_once(lens, bs, seq_len, seed):
    "Whatever the order: x of an epoch is the shuffled stream cut to bs*bl, each token once; y is x shifted."
    docs = _docs(lens, seed % 7)
    dl = LMDataLoader(docs, bs=bs, seq_len=seq_len, shuffle=True, seed=seed)
    for _ in range(2):
        bs_ = list(dl)
        order = dl._order
        assert sorted(order.tolist()) == list(range(len(docs)))
        stream = np.concatenate([docs[i] for i in order])
        x, y = torch.cat([b[0] for b in bs_], 1), torch.cat([b[1] for b in bs_], 1)
        n = bs * ((len(stream) - 1) // bs)
        assert x.shape == (bs, n // bs)
        assert x.flatten().tolist() == stream[:n].tolist()
        assert y.flatten().tolist() == stream[1:n+1].tolist()


def test_seeded_shuffle_reproducible_and_varies():
    docs = _docs([30] * 20)
    a = [torch.cat([x for x, _ in LMDataLoader(docs, bs=4, seq_len=5, shuffle=True, seed=1)], 1) for _ in range(2)]
    assert torch.equal(a[0], a[1])
    dl = LMDataLoader(docs, bs=4, seq_len=5, shuffle=True, seed=1)
    e1, e2 = torch.cat([x for x, _ in dl], 1), torch.cat([x for x, _ in dl], 1)
    assert not torch.equal(e1, e2) and torch.equal(e1, a[0])


def test_from_ids_memmap(tmp_path):
    "A memory-mapped int32 corpus is batched without a copy of the documents, same batches as from the lists."
    docs = _docs([17, 0, 40, 9, 33])
    ids = np.concatenate(docs).astype(np.int32)
    f = tmp_path/'ids.i32'; ids.tofile(f)
    mm = np.memmap(f, dtype=np.int32, mode='r', shape=ids.shape)
    offs = np.cumsum([0] + [len(d) for d in docs])
    dl = LMDataLoader.from_ids(mm, offs, bs=3, seq_len=7)
    assert dl.make_stream() is not None and np.shares_memory(dl.make_stream(), mm)
    assert [(x.tolist(), y.tolist()) for x, y in dl] == _fastai(docs, bs=3, seq_len=7)


def test_new_keeps_arrays_and_learner_runs():
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.losses import CrossEntropyLossFlat
    from fastai.callback.schedule import fit_one_cycle  # noqa
    import torch.nn as nn
    docs = _docs([50] * 30)
    trn = LMDataLoader(docs[:25], bs=4, seq_len=10, shuffle=True, seed=0)
    val = trn.new(LMDataLoader(docs[25:], bs=4).dataset, shuffle=False)
    assert val.seq_len == 10 and not val.shuffle and val.n_tok == 250
    assert trn.new().buf is trn.buf and trn.new(seq_len=3).seq_len == 3
    class M(nn.Module):
        def __init__(self): super().__init__(); self.e, self.o = nn.Embedding(500, 8), nn.Linear(8, 500)
        def forward(self, x): return self.o(self.e(x))
    learn = Learner(DataLoaders(trn, val), M(), loss_func=CrossEntropyLossFlat())
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, 1e-2)
    # fastai's own LMDataLoader needs reorder=False and equal-length batches here too (bl=62 = 2*31)
    preds, targs = learn.get_preds(dl=val.new(seq_len=31), reorder=False)
    assert targs.numel() == 4 * val.bl and preds.shape[-1] == 500 and preds.numel() == 4 * val.bl * 500
    dls = DataLoaders(trn, val).to('cpu')
    assert dls.train.device == torch.device('cpu')
    x, _ = dls.one_batch(); assert x.device.type == 'cpu'


def test_docs_inputs():
    "Lists, numpy arrays, tensors and fastai `(LMTensorText,)` items are accepted."
    docs = [[1, 2, 3], np.array([4, 5], dtype=np.int32), torch.tensor([6, 7, 8]), (fdata.LMTensorText(torch.tensor([9])),)]
    buf, starts, lens = docs_to_arrays(docs)
    assert buf.tolist() == list(range(1, 10)) and starts.tolist() == [0, 3, 5, 8] and lens.tolist() == [3, 2, 3, 1]


@pytest.mark.parametrize('docs,kw,msg', [
    ([], {}, 'no documents'),
    ([[1, 2, 3]], dict(bs=0), 'bs must be an int >= 1, got 0'),
    ([[1, 2, 3]], dict(bs=-2), 'got -2'),
    ([[1, 2, 3]], dict(bs=2.5), 'bs must be an int >= 1, got 2.5'),
    ([[1, 2, 3]], dict(bs=1, seq_len=None), 'seq_len must be an int >= 1, got None'),
    ([[1, 2, 3]], dict(bs=1, seq_len=0), 'seq_len must be an int >= 1, got 0'),
    ([list(range(10)), []], dict(bs=64), r'10 tokens in 2 documents cannot fill bs=64 rows: need at least bs\+1=65'),
    ([list(range(64))], dict(bs=64), 'need at least bs\\+1=65 tokens'),
    ([np.zeros((2, 2), dtype=int)], {}, r'shape \(2, 2\)'),
    ([np.array([0.5, 1.5])], {}, 'must be integers'),
])
def test_bad_input(docs, kw, msg):
    with pytest.raises(ValueError, match=msg): LMDataLoader(docs, **kw)


def test_exactly_one_row():
    "bs+1 tokens is the minimum: one batch, one token per row."
    dl = LMDataLoader([list(range(65))], bs=64, seq_len=72)
    (x, y), = list(dl)
    assert x.shape == (64, 1) and y.flatten().tolist() == list(range(1, 65))


def test_from_ids_bad_offsets():
    with pytest.raises(ValueError, match='len\\(ids\\)=5'): LMDataLoader.from_ids(np.arange(5), [0, 2, 4])
    with pytest.raises(ValueError, match='n_docs\\+1'): LMDataLoader.from_ids(np.arange(5), [0])


@settings(max_examples=25, deadline=None)
@given(lens=_lens.filter(lambda l: sum(l) > 40), bs=st.integers(1, 6), seq_len=st.integers(1, 20), seed=st.integers(0, 2**31),
       shuffle=st.booleans())
def test_vary_seq_len_covers_the_rows(lens, bs, seq_len, seed, shuffle):
    "Variable BPTT: `len` is the next epoch's batch count, and the batches tile the rows exactly (x and y)."
    docs = _docs(lens, 1)
    dl = LMDataLoader(docs, bs=bs, seq_len=seq_len, vary_seq_len=True, seed=seed, shuffle=shuffle)
    for _ in range(2):
        n = len(dl); b = list(dl)
        assert len(b) == n and all(x.shape == y.shape and x.shape[1] >= 1 for x, y in b)
        stream = np.concatenate([docs[i] for i in dl._order]) if shuffle else np.concatenate(docs)
        m = bs * dl.bl
        assert torch.cat([x for x, _ in b], 1).flatten().tolist() == stream[:m].tolist()
        assert torch.cat([y for _, y in b], 1).flatten().tolist() == stream[1:m+1].tolist()


def test_vary_seq_len_with_one_cycle():
    "fastai reads len(dl) before each epoch for its schedule: with variable lengths it must equal the batches yielded."
    from fastai.data.core import DataLoaders
    from fastai.learner import Learner
    from fastai.callback.schedule import fit_one_cycle  # noqa
    from fastai.callback.core import Callback
    from fastai.losses import CrossEntropyLossFlat
    import torch.nn as nn
    counts, widths = [], set()
    class Count(Callback):
        order = 100
        def before_train(self): self.seen = 0
        def after_batch(self):
            if self.training: self.seen += 1; widths.add(self.learn.xb[0].shape[1])
        def after_train(self): counts.append((self.seen, self.learn.n_iter, self.learn.pct_train))
    docs = _docs([100] * 8)
    trn = LMDataLoader(docs, bs=4, seq_len=12, shuffle=True, vary_seq_len=True, seed=3)
    class M(nn.Module):
        def __init__(self): super().__init__(); self.e, self.o = nn.Embedding(500, 8), nn.Linear(8, 500)
        def forward(self, x): return self.o(self.e(x))
    val = LMDataLoader(docs[:2], bs=4, seq_len=40)
    learn = Learner(DataLoaders(trn, val), M(), loss_func=CrossEntropyLossFlat(), cbs=Count())
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(3, 1e-2)
    assert len(counts) == 3 and all(seen == n for seen, n, _ in counts)
    assert len(widths) > 3                                 # the batch lengths really vary
    assert abs(counts[-1][2] - 1) < 1e-6                   # the one-cycle schedule ends exactly at 100%


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=12), st.data())
def test_split_docs_property(lens, data):
    from ulmfit_lib.lm_data import split_docs
    offs = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    ids = np.arange(offs[-1], dtype=np.int32)
    idx = sorted(data.draw(st.sets(st.integers(0, len(lens) - 1))))
    got_ids, got_offs = split_docs(ids, offs, idx)
    exp = [ids[offs[i]:offs[i+1]].tolist() for i in idx]
    assert [got_ids[got_offs[j]:got_offs[j+1]].tolist() for j in range(len(idx))] == exp


def test_empty_loader_from_new():
    "fastai's `Learner.export` calls `dls.new_empty()`: a loader made by `new` may hold no documents (no batches)."
    from ulmfit_lib.lm_data import lm_dls_from_ids, TextIds
    docs = _docs([30] * 10)
    dl = LMDataLoader(docs, bs=4, seq_len=5)
    e = dl.new(dl.dataset[:0])
    assert len(e) == 0 and list(e) == [] and e.seq_len == 5
    ids = np.concatenate(docs); offs = np.arange(0, 301, 30)
    vocab = ['xxunk', 'xxpad', 'xxbos', 'xxeos', 'xxfld', 'xxrep', 'xxwrep', 'xxup', 'xxmaj', 'the'] + [str(i) for i in range(10, 500)]
    dls = lm_dls_from_ids(TextIds.from_ids(ids, offs, vocab=vocab), bs=4, seq_len=5, valid_pct=0.2)
    empty = dls.new_empty()
    assert len(empty.train) == 0 and len(empty.valid) == 0 and empty.train.dataset.vocab == vocab
    t = dls.test_dl(['The 10 11'] * 3)                    # raw texts: tokenized and numericalized with the loaders' vocab
    assert t.dataset[0][0].tolist() == [2, 8, 9, 10, 11]
    with pytest.raises(ValueError, match='no documents'): LMDataLoader([])


def test_fastai_distributed_dl_by_hand_is_refused():
    "Wrapped by hand in fastai's `DistributedDL`, an LM loader says `len` n/2 but read whole; it refuses, naming `ShardedDL`."
    from fastai.distributed import DistributedDL
    class HostDDL(DistributedDL):                       # fastai's own tests stand in for the CUDA broadcast the same way
        def _broadcast(self, t, rank): return list(t)
    dl = LMDataLoader([np.arange(1000) + i for i in range(20)], bs=8, seq_len=10)
    d = HostDDL(dl, rank=0, world_size=2)
    assert len(d) == -(-len(dl) // 2)
    with pytest.raises(ValueError, match='ShardedDL'): list(d)
    assert sum(1 for _ in dl) == len(dl)               # alone, the loader still reads every batch

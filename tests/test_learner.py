"Pretrained loading in fastai's format, malicious/corrupt files, vocab mismatches, atomic saves, O(n) predict, parity with fastai, fastai's export/load_learner."
import os, pickle, zipfile
from pathlib import Path
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from ulmfit_lib.awd_lstm import AWD_LSTM, awd_lstm_lm_config, get_language_model
from ulmfit_lib.learner import (match_embeds, load_pretrained_files, load_vocab_pickle, save_vocab_pickle, safe_torch_load,
                                atomic_torch_save, language_model_learner, text_classifier_learner, get_encoder, save_lm_pretrained)
from ulmfit_lib.lm_data import lm_dls_from_ids, TextIds
from ulmfit_lib.clas_data import clas_dls_from_ids

TINY = dict(awd_lstm_lm_config, emb_sz=8, n_hid=16, n_layers=2)
VOCAB = ['xxunk', 'xxpad', 'xxbos', 'xxeos', 'xxfld', 'xxrep', 'xxwrep', 'xxup', 'xxmaj', 'the', 'movie', 'good', 'bad',
         '.', ',', 'a', 'is', 'was', 'film', 'i']
VOCAB += ['xxfake'] * (-len(VOCAB) % 8)


def _ids(n_docs=40, vocab=VOCAB, seed=0):
    rng = np.random.default_rng(seed)
    lens = rng.integers(5, 40, n_docs)
    ids = rng.integers(2, len([v for v in vocab if v != 'xxfake']), lens.sum()).astype(np.int32)
    return ids, np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)


def _lm_learner(tmp_path, vocab=VOCAB, **kw):
    dls = lm_dls_from_ids(TextIds.from_ids(*_ids(vocab=vocab), vocab=vocab), bs=4, seq_len=10)
    return language_model_learner(dls, AWD_LSTM, config=TINY, pretrained=False, path=tmp_path, **kw)


def _fastai_lm_files(tmp_path, vocab, name='wt'):
    "A checkpoint in fastai's exact format: fastai's own AWD-LSTM LM state dict (with optimizer, as `Learner.save` writes) and an itos pickle."
    from fastai.text.all import get_language_model as fa_glm, AWD_LSTM as FA
    torch.manual_seed(1)
    m = fa_glm(FA, len(vocab), config=TINY)
    d = tmp_path/'models'; d.mkdir(parents=True, exist_ok=True)
    torch.save({'model': m.state_dict(), 'opt': {'state': {}, 'param_groups': []}}, d/f'{name}.pth')
    with open(d/f'{name}.pkl', 'wb') as f: pickle.dump(list(vocab), f)
    return m, d/f'{name}.pth', d/f'{name}.pkl'


def test_load_fastai_format_checkpoint(tmp_path):
    old_vocab = VOCAB[:12] + ['great', 'awful', 'cinema', 'plot'] + ['xxfake'] * 0
    fa_model, wf, vf = _fastai_lm_files(tmp_path, old_vocab)
    wgts, vocab = load_pretrained_files(wf, vf)
    assert vocab == old_vocab and set(wgts) == set(fa_model.state_dict())
    learn = _lm_learner(tmp_path, pretrained_fnames=['wt', 'wt'])
    ours = learn.model.state_dict()
    fa_sd = fa_model.state_dict()
    o2i = {w: i for i, w in enumerate(old_vocab)}
    for i, w in enumerate(VOCAB):
        exp = fa_sd['0.encoder.weight'][o2i[w]] if w in o2i else fa_sd['0.encoder.weight'].mean(0)
        torch.testing.assert_close(ours['0.encoder.weight'][i], exp)
        torch.testing.assert_close(ours['1.decoder.weight'][i], exp)
    for k, v in fa_sd.items():
        if 'encoder' not in k and 'decoder' not in k: torch.testing.assert_close(ours[k], v)
    # and fastai itself gives the same model from the same files
    from fastai.text.all import language_model_learner as fa_lml, AWD_LSTM as FA
    fa_learn = fa_lml(learn.dls, FA, config=TINY, pretrained_fnames=['wt', 'wt'], path=tmp_path)
    for k, v in fa_learn.model.state_dict().items(): torch.testing.assert_close(ours[k], v)


def test_classifier_gets_pretrained_encoder(tmp_path):
    fa_model, wf, vf = _fastai_lm_files(tmp_path, VOCAB)
    lm = _lm_learner(tmp_path)
    ids, offs = _ids()
    y = np.arange(len(offs) - 1) % 2
    ds = TextIds.from_ids(ids, offs, y, VOCAB)
    dls = clas_dls_from_ids(ds, ds, bs=4)
    clas = text_classifier_learner(dls, AWD_LSTM, config=dict(emb_sz=8, n_hid=16, n_layers=2), pretrained=False, path=tmp_path)
    clas.load_pretrained(wf, vf, model=get_encoder(clas.model))
    exp = match_embeds({k: v.clone() for k, v in fa_model.state_dict().items()}, VOCAB, VOCAB)  # 'xxfake' rows: the last copy, as fastai
    for k, v in get_encoder(clas.model).state_dict().items(): torch.testing.assert_close(v, exp['0.' + k])
    assert not all(p.requires_grad for p in clas.model.parameters())  # frozen after loading


def test_malicious_pickles_refused(tmp_path):
    class Evil:
        def __reduce__(self): return (os.system, (f'touch {tmp_path}/pwned',))
    (tmp_path/'evil.pkl').write_bytes(pickle.dumps(['xxunk', Evil()]))
    with pytest.raises(pickle.UnpicklingError, match='refusing'): load_vocab_pickle(tmp_path/'evil.pkl')
    torch.save({'0.encoder.weight': torch.zeros(2, 2), 'evil': Evil()}, tmp_path/'evil.pth')
    with pytest.raises(pickle.UnpicklingError, match='evil.pth'): safe_torch_load(tmp_path/'evil.pth')
    with open(tmp_path/'ok.pkl', 'wb') as f: pickle.dump(['a', 'b'], f)
    with pytest.raises(pickle.UnpicklingError): load_pretrained_files(tmp_path/'evil.pth', tmp_path/'ok.pkl')
    assert not (tmp_path/'pwned').exists()


@pytest.mark.parametrize('obj,msg', [({'a': 1}, 'list of str'), (['a', 3], 'found a int'), ('abc', 'found a str')])
def test_vocab_pickle_must_be_list_of_str(tmp_path, obj, msg):
    with open(tmp_path/'v.pkl', 'wb') as f: pickle.dump(obj, f)
    with pytest.raises(ValueError, match=msg): load_vocab_pickle(tmp_path/'v.pkl')


def test_corrupt_and_missing_files(tmp_path):
    _, wf, vf = _fastai_lm_files(tmp_path, VOCAB)
    bad = tmp_path/'bad.pth'; bad.write_bytes(wf.read_bytes()[:len(wf.read_bytes())//2])
    with pytest.raises(ValueError, match='bad.pth is not a readable torch checkpoint'): load_pretrained_files(bad, vf)
    (tmp_path/'junk.pkl').write_bytes(b'\x80\x04junk')
    with pytest.raises((ValueError, pickle.UnpicklingError), match='junk.pkl'): load_vocab_pickle(tmp_path/'junk.pkl')
    with pytest.raises(FileNotFoundError, match='nope.pth'): load_pretrained_files(tmp_path/'nope.pth', vf)
    short = tmp_path/'short.pkl'; save_vocab_pickle(VOCAB[:5], short)
    with pytest.raises(ValueError, match=f'{len(VOCAB)} rows but .*short.pkl has 5 tokens'): load_pretrained_files(wf, short)


def test_encoder_vocab_mismatch_names_both_sizes(tmp_path):
    learn = _lm_learner(tmp_path)
    learn.save_encoder('enc')
    v2 = VOCAB + ['extra%d' % i for i in range(8)]
    other = _lm_learner(tmp_path, vocab=v2)
    with pytest.raises(ValueError, match=f'vocab of {len(VOCAB)} tokens vs {len(v2)}.*encoder.weight'):
        other.load_encoder('enc')
    # a different model size: the parameter and both shapes
    big = language_model_learner(learn.dls, AWD_LSTM, config=dict(TINY, n_hid=24), pretrained=False, path=tmp_path)
    with pytest.raises(ValueError, match=r'\(24, 8\).*\(16, 8\)|\(16, 8\).*\(24, 8\)|shape'): big.load_encoder('enc')


def test_save_load_roundtrip_and_atomic(tmp_path, monkeypatch):
    learn = _lm_learner(tmp_path)
    learn.fit(1, 1e-3)
    f = learn.save('m')
    sd = {k: v.clone() for k, v in learn.model.state_dict().items()}
    learn2 = _lm_learner(tmp_path).load('m')
    for k, v in learn2.model.state_dict().items(): torch.testing.assert_close(v, sd[k])
    # a crash while writing leaves the previous file intact and no temporary file
    before = f.read_bytes()
    def boom(*a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(torch, 'save', boom)
    with pytest.raises(KeyboardInterrupt): learn.save('m')
    with pytest.raises(KeyboardInterrupt): learn.save_encoder('enc_new')
    assert f.read_bytes() == before
    assert sorted(p.name for p in f.parent.iterdir()) == ['m.pth']


def test_save_lm_pretrained_is_fastai_format(tmp_path):
    learn = _lm_learner(tmp_path)
    wf, vf = save_lm_pretrained(learn, 'mine')
    with open(vf, 'rb') as fh: assert pickle.load(fh) == VOCAB
    sd = torch.load(wf, weights_only=True)
    from fastai.text.all import get_language_model as fa_glm, AWD_LSTM as FA
    fa = fa_glm(FA, len(VOCAB), config=TINY)
    fa.load_state_dict(sd)   # strict: fastai's model takes our file as is


def test_predict_matches_manual_generation(tmp_path):
    "predict = tokenize, then the O(n) `generate`, then drop xxbos/xxpad and decode."
    from ulmfit_lib.awd_lstm import generate
    learn = _lm_learner(tmp_path)
    learn.tokenize = lambda text: ['xxbos'] + text.split()
    torch.manual_seed(3); out = learn.predict('the movie', n_words=6, temperature=0.8, decoder=lambda t: t)
    torch.manual_seed(3)
    ids = generate(learn.model, torch.tensor([2, VOCAB.index('the'), VOCAB.index('movie')]), 6, temperature=0.8)
    assert out == ' '.join(VOCAB[i] for i in ids.tolist()[1:] if VOCAB[i] not in ('xxbos', 'xxpad'))
    toks = out.split()
    assert toks[:2] == ['the', 'movie'] and 'xxunk' not in toks[2:]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.sampled_from(['a', 'b', 'c', 'd', 'e', 'f']), min_size=1, max_size=8),
       st.lists(st.sampled_from(['a', 'b', 'c', 'd', 'e', 'g', 'h']), min_size=1, max_size=8), st.booleans())
def test_match_embeds_matches_fastai(old, new, with_bias):
    from fastai.text.learner import match_embeds as fa_match
    g = torch.Generator().manual_seed(len(old) * 31 + len(new))
    w = {'0.encoder.weight': torch.randn(len(old), 3, generator=g), '0.encoder_dp.emb.weight': torch.zeros(len(old), 3),
         '1.decoder.weight': torch.zeros(len(old), 3)}
    if with_bias: w['1.decoder.bias'] = torch.randn(len(old), generator=g)
    a = match_embeds({k: v.clone() for k, v in w.items()}, old, new)
    b = fa_match({k: v.clone() for k, v in w.items()}, old, new)
    assert set(a) == set(b)
    for k in b: torch.testing.assert_close(a[k], b[k])


def test_lm_dls_hold_out_documents(tmp_path):
    ids, offs = _ids(n_docs=50)
    dls = lm_dls_from_ids(TextIds.from_ids(ids, offs, vocab=VOCAB), bs=4, seq_len=10, valid_pct=0.2)
    assert dls.train.n_tok + dls.valid.n_tok == len(ids)
    assert len(dls.valid.lens_) == 10
    with pytest.raises(ValueError, match='valid_pct'): lm_dls_from_ids(TextIds.from_ids(ids, offs, vocab=VOCAB), valid_pct=1.5)


def test_classifier_needs_n_out(tmp_path):
    ids, offs = _ids()
    y = np.zeros(len(offs) - 1, dtype=int)
    with pytest.raises(ValueError, match='labels for'): TextIds.from_ids(ids, offs, y[:-1], VOCAB)


def test_wt103_offline_warns(tmp_path, monkeypatch):
    "Without internet, pretrained=True says so and starts from random weights."
    import fastai.data.external as ext
    def no_net(*a, **k): raise ConnectionError('no network')
    monkeypatch.setattr(ext, 'untar_data', no_net)
    dls = lm_dls_from_ids(TextIds.from_ids(*_ids(), vocab=VOCAB), bs=4, seq_len=10)
    with pytest.warns(UserWarning, match='WikiText-103.*random weights'):
        learn = language_model_learner(dls, AWD_LSTM, config=TINY, path=tmp_path)
    assert learn.pretrained_from is None


# --- checkpoints: what `load` accepts, and how `save` writes


def test_load_refuses_what_is_not_a_state_dict(tmp_path):
    learn = _lm_learner(tmp_path)
    d = tmp_path/'models'; d.mkdir(exist_ok=True)
    torch.save([1, 2, 3], d/'list.pth')
    torch.save({'model': {'0.encoder.weight': 3}, 'opt': {}}, d/'notensors.pth')
    for name in ('list', 'notensors'):
        with pytest.raises(ValueError, match=f'{name}.pth is not a state dict of tensors'): learn.load(name)
    with pytest.raises(ValueError, match='list.pth is not a state dict of tensors'): learn.load_encoder('list')


def test_load_warns_on_a_bad_optimizer_state(tmp_path):
    "As fastai's `load_model`: an optimizer state that does not fit is said, not swallowed; the weights are loaded."
    learn = _lm_learner(tmp_path)
    d = tmp_path/'models'; d.mkdir(exist_ok=True)
    sd = {k: v + 1 for k, v in learn.model.state_dict().items()}
    torch.save({'model': sd, 'opt': {'state': {}, 'param_groups': []}}, d/'badopt.pth')
    other = _lm_learner(tmp_path)
    with pytest.warns(UserWarning, match='Could not load the optimizer state'): other.load('badopt')
    for k, v in other.model.state_dict().items(): torch.testing.assert_close(v, sd[k])
    torch.save(sd, d/'noopt.pth')
    with pytest.warns(UserWarning, match="doesn't contain an optimizer state"): other.load('noopt')


def test_load_strict_false_and_device_are_honoured(tmp_path, monkeypatch):
    learn = _lm_learner(tmp_path)
    d = tmp_path/'models'; d.mkdir(exist_ok=True)
    sd = {k: v + 1 for k, v in learn.model.state_dict().items()}
    dropped = '1.decoder.bias'
    part = {k: v for k, v in sd.items() if k != dropped}; part['extra.weight'] = torch.zeros(2)
    torch.save(part, d/'part.pth')
    other = _lm_learner(tmp_path)
    before = other.model.state_dict()[dropped].clone()
    with pytest.raises(ValueError, match='missing keys'): other.load('part', with_opt=False)
    other.load('part', with_opt=False, strict=False)
    for k, v in other.model.state_dict().items(): torch.testing.assert_close(v, before if k == dropped else sd[k])
    bad = dict(part); bad['0.encoder.weight'] = torch.zeros(3, 8); torch.save(bad, d/'bad.pth')
    with pytest.raises(ValueError, match=r'0.encoder.weight has shape \(3, 8\)'): other.load('bad', with_opt=False, strict=False)
    # `device` goes to `torch.load` as fastai's `load_model` sends it (an int is a CUDA index)
    seen, real = [], torch.load
    def rec(*a, **k): seen.append(k.get('map_location')); k['map_location'] = 'cpu'; return real(*a, **k)
    learn.save_encoder('enc')
    monkeypatch.setattr(torch, 'load', rec)
    other.load('part', with_opt=False, strict=False, device='cuda:1')
    other.load('part', with_opt=False, strict=False, device=0)
    other.load_encoder('enc', device='cuda:2')
    assert seen == ['cuda:1', torch.device('cuda', 0), 'cuda:2']


def test_pretrained_decoder_bias_must_fit_the_vocab(tmp_path):
    _, wf, vf = _fastai_lm_files(tmp_path, VOCAB)
    sd = torch.load(wf, weights_only=False)['model']
    sd['1.decoder.bias'] = sd['1.decoder.bias'][:-8]
    torch.save(sd, wf)
    with pytest.raises(ValueError, match=f'decoder bias of {len(VOCAB) - 8} entries but .*wt.pkl has {len(VOCAB)} tokens'):
        load_pretrained_files(wf, vf)


def test_save_cleans_stale_temporaries_and_has_plain_mode(tmp_path):
    "`save` goes through `basics.atomic_write`: leftovers of killed saves older than STALE_SECONDS go, fresh ones stay, mode as `open` gives."
    from ulmfit_lib.basics import STALE_SECONDS, current_umask
    import time
    learn = _lm_learner(tmp_path)
    d = tmp_path/'models'; d.mkdir(exist_ok=True)
    stale, fresh = d/'.m.pth.abc123.tmp', d/'.m.pth.def456.tmp'
    for f in (stale, fresh): f.write_bytes(b'half')
    old = time.time() - STALE_SECONDS - 60; os.utime(stale, (old, old))
    f = learn.save('m')
    assert not stale.exists() and fresh.exists()
    mode = 0o666 & ~current_umask()
    assert f.stat().st_mode & 0o777 == mode
    assert learn.save_encoder('enc').stat().st_mode & 0o777 == mode
    assert save_vocab_pickle(VOCAB, d/'v.pkl').stat().st_mode & 0o777 == mode


# --- fastai's export / load_learner / predict, for every way of building the loaders

WORDS = 'the movie was good bad great awful plot actor film i loved hated it this a story boring fun'.split()


@pytest.fixture(scope='module')
def tiny_reviews(tmp_path_factory):
    "A tiny IMDb-like folder (train/test x neg/pos, 10 reviews each), the same reviews as a `DataFrame`, a cache folder."
    import random
    import pandas as pd
    root = tmp_path_factory.mktemp('tiny'); path = root/'imdb'; rng = random.Random(0); rows = []
    for split in ('train', 'test'):
        for lab in ('neg', 'pos'):
            (path/split/lab).mkdir(parents=True)
            for i in range(10):
                text = ' '.join(rng.choice(WORDS) for _ in range(rng.randint(10, 40))).capitalize() + '.'
                (path/split/lab/f'{i}.txt').write_text(text)
                rows.append(dict(label=lab, text=text, is_valid=split == 'test'))
    return path, pd.DataFrame(rows), root/'cache'


def _dls(way, kind, path, df, cache):
    from functools import partial
    from fastai.data.block import DataBlock, CategoryBlock
    from fastai.data.transforms import get_text_files, parent_label, GrandparentSplitter, RandomSplitter
    from ulmfit_lib.clas_data import TextBlock, TextDataLoaders, clas_dls_from_corpus
    from ulmfit_lib.corpus import tokenize_folder
    from ulmfit_lib.numericalize import corpus_vocab
    from ulmfit_lib.lm_data import lm_dls_from_corpus
    kw = dict(n_workers=0, cache_dir=cache)
    if way == 'datablock' and kind == 'lm':
        return DataBlock(blocks=TextBlock.from_folder(path, is_lm=True, **kw), get_items=get_text_files,
                         splitter=RandomSplitter(0.1, seed=0)).dataloaders(path, bs=4, seq_len=10)
    if way == 'datablock':
        return DataBlock(blocks=(TextBlock.from_folder(path, **kw), CategoryBlock), get_y=parent_label,
                         get_items=partial(get_text_files, folders=['train', 'test']),
                         splitter=GrandparentSplitter(valid_name='test')).dataloaders(path, bs=4)
    if way == 'textdataloaders' and kind == 'lm':
        return TextDataLoaders.from_folder(path, is_lm=True, valid_pct=0.2, seed=0, bs=4, seq_len=10, **kw)
    if way == 'textdataloaders':
        return TextDataLoaders.from_df(df, text_col='text', label_col='label', valid_col='is_valid', bs=4, **kw)
    trn = tokenize_folder(path/'train', progress=False, **kw)
    vocab = corpus_vocab(trn, min_freq=1)
    if kind == 'lm': return lm_dls_from_corpus(trn, vocab, bs=4, seq_len=10)
    return clas_dls_from_corpus(trn, tokenize_folder(path/'test', progress=False, **kw), vocab, bs=4)


@pytest.mark.parametrize('kind', ['lm', 'clas'])
@pytest.mark.parametrize('way', ['datablock', 'textdataloaders', 'ids'])
def test_export_load_learner_predict(tiny_reviews, tmp_path, way, kind):
    "fastai's way: `learn.export()`, `load_learner(cpu=True)`, then `predict(text)` gives what the learner gave before export."
    import warnings
    from ulmfit_lib.all import load_learner
    from ulmfit_lib.awd_lstm import awd_lstm_clas_config
    path, df, cache = tiny_reviews
    dls = _dls(way, kind, path, df, cache)
    cfg = dict(emb_sz=8, n_hid=16, n_layers=2)
    text = 'This movie was a great story, I loved it'
    if kind == 'lm':
        learn = language_model_learner(dls, AWD_LSTM, config=dict(awd_lstm_lm_config, **cfg), pretrained=False, path=tmp_path)
    else:
        learn = text_classifier_learner(dls, AWD_LSTM, config=dict(awd_lstm_clas_config, **cfg), pretrained=False, path=tmp_path)
    def pred(l):
        torch.manual_seed(0)
        with l.no_bar(): return l.predict(text, n_words=5) if kind == 'lm' else l.predict(text)
    before = pred(learn)
    learn.export('exported.pkl')
    assert len(learn.dls.train) > 0                      # the learner keeps its data after exporting
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')                  # fastai's "only load files you trust": loading is the point here
        loaded = load_learner(tmp_path/'exported.pkl', cpu=True)
    assert type(loaded) is type(learn) and len(loaded.dls.train) == 0
    after = pred(loaded)
    if kind == 'lm':
        assert isinstance(after, str) and after == before and after.startswith('This movie was a great story')
    else:
        (lab, idx, probs), (lab2, idx2, probs2) = before, after
        assert lab in ('neg', 'pos') and lab2 == lab and int(idx2) == int(idx) and probs.shape == (2,)
        assert ['neg', 'pos'][int(idx)] == lab
        torch.testing.assert_close(probs2, probs)

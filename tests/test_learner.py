"Pretrained loading in fastai's format, malicious/corrupt files, vocab mismatches, atomic saves, O(n) predict, parity with fastai."
import os, pickle, zipfile
from pathlib import Path
import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st
from ulmfit_lib.awd_lstm import AWD_LSTM, awd_lstm_lm_config, get_language_model
from ulmfit_lib.learner import (match_embeds, load_pretrained_files, load_vocab_pickle, save_vocab_pickle, safe_torch_load,
                                atomic_torch_save, language_model_learner, text_classifier_learner, lm_dls_from_ids,
                                clas_dls_from_ids, get_encoder, save_lm_pretrained, _split_docs)

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
    dls = lm_dls_from_ids(*_ids(vocab=vocab), vocab, bs=4, seq_len=10)
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
    dls = clas_dls_from_ids((ids, offs, y), (ids, offs, y), VOCAB, bs=4)
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


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=12), st.data())
def test_split_docs_property(lens, data):
    offs = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    ids = np.arange(offs[-1], dtype=np.int32)
    idx = sorted(data.draw(st.sets(st.integers(0, len(lens) - 1))))
    got_ids, got_offs = _split_docs(ids, offs, idx)
    exp = [ids[offs[i]:offs[i+1]].tolist() for i in idx]
    assert [got_ids[got_offs[j]:got_offs[j+1]].tolist() for j in range(len(idx))] == exp


def test_lm_dls_hold_out_documents(tmp_path):
    ids, offs = _ids(n_docs=50)
    dls = lm_dls_from_ids(ids, offs, VOCAB, bs=4, seq_len=10, valid_pct=0.2)
    assert dls.train.n_tok + dls.valid.n_tok == len(ids)
    assert len(dls.valid.lens_) == 10
    with pytest.raises(ValueError, match='valid_pct'): lm_dls_from_ids(ids, offs, VOCAB, valid_pct=1.5)


def test_classifier_needs_n_out(tmp_path):
    ids, offs = _ids()
    y = np.zeros(len(offs) - 1, dtype=int)
    with pytest.raises(ValueError, match='labels for'): clas_dls_from_ids((ids, offs, y[:-1]), (ids, offs, y), VOCAB)


def test_wt103_offline_warns(tmp_path, monkeypatch):
    "Without internet, pretrained=True says so and starts from random weights."
    import fastai.data.external as ext
    def no_net(*a, **k): raise ConnectionError('no network')
    monkeypatch.setattr(ext, 'untar_data', no_net)
    dls = lm_dls_from_ids(*_ids(), VOCAB, bs=4, seq_len=10)
    with pytest.warns(UserWarning, match='WikiText-103.*random weights'):
        learn = language_model_learner(dls, AWD_LSTM, config=TINY, path=tmp_path)
    assert learn.pretrained_from is None

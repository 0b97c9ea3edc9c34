"Parity with fastai's AWD-LSTM, properties of the dropouts and the classifier, generation, and bad input."
import warnings
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from hypothesis import given, settings, strategies as st
import fastai.text.all as fa
from ulmfit_lib.awd_lstm import (AWD_LSTM, LinearDecoder, SequentialRNN, get_language_model, get_text_classifier,
    SentenceEncoder, PoolingLinearClassifier, masked_concat_pool, awd_lstm_lm_config, awd_lstm_clas_config,
    awd_lstm_lm_split, awd_lstm_clas_split, dropout_mask, RNNDropout, WeightDropout, EmbeddingDropout,
    generate, ar_tar_loss)

SMALL = dict(emb_sz=10, n_hid=14, n_layers=3)
NO_DROP = dict(output_p=0., hidden_p=0., input_p=0., embed_p=0., weight_p=0.)


def lm_pair(vocab_sz=60, config=None, seed=0, **kw):
    "Our language model and fastai's, with the same weights."
    config = dict(awd_lstm_lm_config, **SMALL) if config is None else config
    torch.manual_seed(seed)
    ours = get_language_model(AWD_LSTM, vocab_sz, config=config, **kw)
    theirs = fa.get_language_model(fa.AWD_LSTM, vocab_sz, config=config, **kw)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs


def clas_pair(vocab_sz=60, n_class=3, seq_len=5, seed=0, **kw):
    torch.manual_seed(seed)
    ours = get_text_classifier(AWD_LSTM, vocab_sz, n_class, seq_len=seq_len, config=SMALL, **kw)
    theirs = fa.get_text_classifier(fa.AWD_LSTM, vocab_sz, n_class, seq_len=seq_len, config=SMALL, **kw)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    return ours, theirs


def padded(lengths, vocab_sz=60, seq_len=5, seed=0):
    "A batch as fastai's classifier loader builds it: sorted by decreasing length, `pad_input_chunk`."
    g = torch.Generator().manual_seed(seed)
    texts = [torch.randint(2, vocab_sz, (n,), generator=g) for n in sorted(lengths, reverse=True)]
    batch = fa.pad_input_chunk([(t,) for t in texts], pad_idx=1, seq_len=seq_len)
    return texts, torch.stack([b[0] for b in batch])


# ---------------------------------------------------------------- state dicts
@pytest.mark.parametrize('bidir', [False, True])
def test_lm_state_dict_keys_shapes_and_loading_both_ways(bidir):
    cfg = dict(awd_lstm_lm_config, bidir=bidir)   # fastai's real sizes (emb 400, hid 1152), small vocab
    torch.manual_seed(0)
    ours = get_language_model(AWD_LSTM, 100, config=cfg)
    theirs = fa.get_language_model(fa.AWD_LSTM, 100, config=cfg)
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in theirs.state_dict().items()]
    ours.load_state_dict(theirs.state_dict(), strict=True)
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))
    torch.manual_seed(1)
    other = get_language_model(AWD_LSTM, 100, config=cfg)
    theirs.load_state_dict(other.state_dict(), strict=True)
    assert all(torch.equal(a, b) for a, b in zip(other.state_dict().values(), theirs.state_dict().values()))


def test_clas_state_dict_keys_shapes_and_loading_both_ways():
    ours, theirs = clas_pair()
    assert [(k, v.shape) for k, v in ours.state_dict().items()] == [(k, v.shape) for k, v in theirs.state_dict().items()]
    ours.load_state_dict(theirs.state_dict(), strict=True)
    # the encoder of a language model goes into the classifier the way fastai's `load_encoder` does it
    lm, _ = lm_pair()
    ours[0].module.load_state_dict(lm[0].state_dict(), strict=True)
    assert torch.equal(ours[0].module.encoder.weight, lm[0].encoder.weight)


def test_tied_weights():
    lm, _ = lm_pair()
    assert lm[1].decoder.weight is lm[0].encoder.weight is lm[0].encoder_dp.emb.weight
    untied = get_language_model(AWD_LSTM, 60, config=dict(awd_lstm_lm_config, **SMALL, tie_weights=False))
    assert untied[1].decoder.weight is not untied[0].encoder.weight


# ---------------------------------------------------------------- outputs
@pytest.mark.parametrize('bidir', [False, True])
def test_lm_eval_outputs_equal_fastai(bidir):
    ours, theirs = lm_pair(config=dict(awd_lstm_lm_config, **SMALL, bidir=bidir))
    for m in (ours, theirs): m.eval(); m.reset()
    g = torch.Generator().manual_seed(0)
    # consecutive batches (hidden state carried), then a smaller last batch (hidden state cut)
    for bs, sl in [(6, 7), (6, 7), (6, 3), (4, 7), (6, 1)]:
        x = torch.randint(0, 60, (bs, sl), generator=g)
        for a, b in zip(ours(x), theirs(x)): assert (a - b).abs().max() <= 1e-5


def test_lm_full_size_eval_outputs_equal_fastai():
    "fastai's LM config (emb 400, hid 1152, 3 layers), vocab 2000."
    ours, theirs = lm_pair(vocab_sz=2000, config=awd_lstm_lm_config)
    for m in (ours, theirs): m.eval(); m.reset()
    x = torch.randint(0, 2000, (3, 20), generator=torch.Generator().manual_seed(0))
    for _ in range(2):
        with torch.no_grad():
            for a, b in zip(ours(x), theirs(x)): assert (a - b).abs().max() <= 1e-5


def test_lm_training_mode_same_seed_same_outputs_and_gradients():
    "Our dropouts draw the same random numbers in the same order as fastai's: training is reproducible across both."
    ours, theirs = lm_pair()
    for m in (ours, theirs): m.train(); m.reset()
    x = torch.randint(0, 60, (4, 9), generator=torch.Generator().manual_seed(0))
    for step in range(3):
        torch.manual_seed(10 + step); a = ours(x)
        torch.manual_seed(10 + step); b = theirs(x)
        for u, v in zip(a, b): assert (u - v).abs().max() <= 1e-6
        (a[0].pow(2).mean() + ar_tar_loss(a[2], a[1])).backward()
        (b[0].pow(2).mean() + ar_tar_loss(b[2], b[1])).backward()
    for (n, p), (n2, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert n == n2 and (p.grad - q.grad).abs().max() <= 1e-6, n


@pytest.mark.parametrize('max_len', [None, 10, 1440])
@pytest.mark.parametrize('lengths', [[17, 12, 7], [15, 10, 10, 5, 5], [16, 16, 16], [17, 16, 14, 13]])
def test_classifier_eval_outputs_equal_fastai(max_len, lengths):
    "Padded batches on which fastai's BPT3C bookkeeping is right (see the next test for where it is not)."
    ours, theirs = clas_pair(max_len=max_len)
    for m in (ours, theirs): m.eval()
    _, xb = padded(lengths)
    (a, out, _), (b, fout, _) = ours(xb), theirs(xb)
    assert (a - b).abs().max() <= 1e-5
    real = xb[:, -out.shape[1]:] != 1      # encoder outputs at padding positions are not used (and differ)
    assert (out - fout)[real].abs().max() <= 1e-5


@pytest.mark.parametrize('lengths,bad_row', [([17, 1], 1), ([17, 12, 9, 6], 3)])
def test_classifier_fixes_fastai_padding_bugs(lengths, bad_row):
    "fastai pools a padding position ([17, 1]) or never reads a short review's last token ([17, 12, 9, 6])."
    ours, theirs = clas_pair(max_len=None)
    for m in (ours, theirs): m.eval()
    texts, xb = padded(lengths)
    alone = torch.cat([ours(t[None])[0] for t in texts])
    a, b = ours(xb)[0], theirs(xb)[0]
    assert (a - alone).abs().max() <= 1e-5
    assert (b[bad_row] - alone[bad_row]).abs().max() > 1e-3
    good = [i for i in range(len(lengths)) if i != bad_row]
    assert (a[good] - b[good]).abs().max() <= 1e-5


def test_classifier_unsorted_batch():
    ours, _ = clas_pair(max_len=None)
    ours.eval()
    texts, xb = padded([17, 12, 9, 6, 1])
    perm = torch.tensor([3, 0, 4, 2, 1])
    assert (ours(xb[perm])[0] - ours(xb)[0][perm]).abs().max() <= 1e-5


@settings(max_examples=15, deadline=None)
@given(lengths=st.lists(st.integers(1, 23), min_size=1, max_size=6), seed=st.integers(0, 1000))
def test_classifier_padding_invariance(lengths, seed):
    "A review's prediction does not depend on the batch it is padded into (max_len covering the batch)."
    ours, _ = clas_pair(seed=seed % 7)
    ours.eval()
    texts, xb = padded(lengths, seed=seed)
    batched = ours(xb)[0]
    alone = torch.cat([ours(t[None])[0] for t in texts])
    assert (batched - alone).abs().max() <= 1e-5


def test_classifier_trains_with_gradient_only_through_kept_chunks():
    ours, _ = clas_pair(max_len=10)
    ours.train()
    _, xb = padded([17, 12, 9], seed=3)
    ours(xb)[0].sum().backward()
    grad = ours[0].module.encoder.weight.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    # with max_len=10 the chunks starting at 10 and 15 are kept; tokens read only before column 10 get no gradient
    only_early = set(xb[:, :10].flatten().tolist()) - set(xb[:, 10:].flatten().tolist()) - {1}
    assert only_early
    for t in only_early: assert grad[t].abs().sum() == 0


# ---------------------------------------------------------------- properties
@pytest.mark.parametrize('drop_mult', [0., 0.3, 1., 1.5])
def test_drop_mult_scales_every_p(drop_mult):
    cfg = dict(awd_lstm_lm_config, **SMALL)
    lm = get_language_model(AWD_LSTM, 60, config=cfg, drop_mult=drop_mult)
    enc = lm[0]
    assert enc.encoder_dp.embed_p == pytest.approx(cfg['embed_p'] * drop_mult)
    assert enc.input_dp.p == pytest.approx(cfg['input_p'] * drop_mult)
    assert all(dp.p == pytest.approx(cfg['hidden_p'] * drop_mult) for dp in enc.hidden_dps)
    assert all(r.weight_p == pytest.approx(cfg['weight_p'] * drop_mult) for r in enc.rnns)
    assert lm[1].output_dp.p == pytest.approx(cfg['output_p'] * drop_mult)
    clas = get_text_classifier(AWD_LSTM, 60, 2, config=SMALL, drop_mult=drop_mult, ps=[0.2])
    enc = clas[0].module
    assert enc.encoder_dp.embed_p == pytest.approx(awd_lstm_clas_config['embed_p'] * drop_mult)
    assert enc.input_dp.p == pytest.approx(awd_lstm_clas_config['input_p'] * drop_mult)
    assert all(r.weight_p == pytest.approx(awd_lstm_clas_config['weight_p'] * drop_mult) for r in enc.rnns)
    head_ps = [m.p for m in clas[1].modules() if isinstance(m, nn.Dropout)]
    expected = [p for p in (awd_lstm_clas_config['output_p'] * drop_mult, 0.2) if p > 0]   # LinBnDrop skips p=0
    assert head_ps == pytest.approx(expected)   # the head's own ps are not scaled
    # the config passed in is not modified
    assert cfg == dict(awd_lstm_lm_config, **SMALL)


def test_configs_are_fastais():
    assert awd_lstm_lm_config == fa.awd_lstm_lm_config
    assert awd_lstm_clas_config == fa.awd_lstm_clas_config
    assert awd_lstm_lm_config['n_hid'] == 1152


@pytest.mark.parametrize('p', [0.1, 0.5, 0.8])
def test_dropout_rates(p):
    torch.manual_seed(0)
    x = torch.ones(64, 50, 40)
    y = RNNDropout(p)(x)
    assert abs((y[:, 0] == 0).float().mean() - p) < 0.03
    assert (y == y[:, :1]).all()                                           # same mask at every step
    assert abs(y.mean() - 1) < 0.05
    emb = nn.Embedding(5000, 4, padding_idx=1)
    words = torch.arange(5000)[None]
    dropped_rows = (EmbeddingDropout(emb, p)(words) == 0).all(-1).float().mean()
    assert abs(dropped_rows - p) < 0.03
    wd = WeightDropout(nn.LSTM(30, 40, batch_first=True), p)
    torch.manual_seed(1)
    w = wd._dropped()['weight_hh_l0']
    assert abs((w == 0).float().mean() - p) < 0.02
    assert torch.allclose(w[w != 0], wd.weight_hh_l0_raw[w != 0] / (1 - p))
    wd.eval(); assert wd._dropped()['weight_hh_l0'] is wd.weight_hh_l0_raw  # no copy at inference


def test_weight_dropout_only_drops_recurrent_weights_and_matches_lstm():
    torch.manual_seed(0)
    wd = WeightDropout(nn.LSTM(5, 7, batch_first=True), 0.5)
    ref = nn.LSTM(5, 7, batch_first=True)
    x = torch.randn(3, 6, 5)
    h0 = (torch.randn(1, 3, 7), torch.randn(1, 3, 7))
    torch.manual_seed(3); y, (h, c) = wd(x, h0)
    torch.manual_seed(3); w = F.dropout(wd.weight_hh_l0_raw, 0.5)
    sd = {k[7:]: v for k, v in wd.state_dict().items() if k.startswith('module.')}
    ref.load_state_dict({**sd, 'weight_hh_l0': w})
    ry, (rh, rc) = ref(x, h0)
    assert (y - ry).abs().max() < 1e-6 and (h - rh).abs().max() < 1e-6 and (c - rc).abs().max() < 1e-6


def test_weight_dropout_wraps_other_modules():
    torch.manual_seed(0)
    lin = nn.Linear(6, 4)
    wd = WeightDropout(lin, 0.5, layer_names='weight')
    x = torch.randn(3, 6)
    wd.eval(); assert torch.allclose(wd(x), x @ wd.weight_raw.t() + lin.bias)
    wd.train(); torch.manual_seed(2); y = wd(x)
    torch.manual_seed(2); assert torch.allclose(y, x @ F.dropout(wd.weight_raw, 0.5).t() + lin.bias)


def test_no_weight_warning_and_weight_p_zero_reset():
    "No warnings to silence; weight_p=0 then reset works (fastai's WeightDropout raises TypeError there on torch 2.x)."
    lm = get_language_model(AWD_LSTM, 60, config=dict(awd_lstm_lm_config, **SMALL, **NO_DROP))
    x = torch.randint(0, 60, (2, 5))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        lm.train(); lm(x); lm.reset(); lm.eval(); lm(x); lm.reset(); lm.train(); lm(x)
    assert 'weight_hh_l0' not in dict(lm.named_parameters()).keys()


def test_reset_and_detach():
    lm, _ = lm_pair()
    lm.train()
    x = torch.randint(0, 60, (4, 9))
    lm(x)
    assert all(h.grad_fn is None and not h.requires_grad for hc in lm[0].hidden for h in hc)
    assert any(h.abs().sum() > 0 for hc in lm[0].hidden for h in hc)
    lm.reset()
    assert all((h == 0).all() and h.shape[1] == lm[0].bs for hc in lm[0].hidden for h in hc)
    # truncated BPTT: backward of the second batch does not reach the first (would raise if the graph were kept)
    lm(x)[0].sum().backward(); lm(x)[0].sum().backward()
    # chunked reading equals reading at once (eval mode, carried state)
    lm.eval(); lm.reset(); whole = lm(x)[0]
    lm.reset(); parts = torch.cat([lm(x[:, :2])[0], lm(x[:, 2:5])[0], lm(x[:, 5:])[0]], 1)
    assert (whole - parts).abs().max() < 1e-6


def test_splits_match_fastai():
    ours, theirs = lm_pair()
    name = {id(p): n for n, p in ours.named_parameters()}
    fname = {id(p): n for n, p in theirs.named_parameters()}
    assert [[name[id(p)] for p in g] for g in awd_lstm_lm_split(ours)] == \
           [[fname[id(p)] for p in g] for g in fa.awd_lstm_lm_split(theirs)]
    ours, theirs = clas_pair()
    name = {id(p): n for n, p in ours.named_parameters()}
    fname = {id(p): n for n, p in theirs.named_parameters()}
    groups = awd_lstm_clas_split(ours)
    assert [[name[id(p)] for p in g] for g in groups] == [[fname[id(p)] for p in g] for g in fa.awd_lstm_clas_split(theirs)]
    assert sum(map(len, groups)) == len(list(ours.parameters()))


def test_fastai_learner_with_rnn_callbacks():
    "fastai's Learner, LMDataLoader, ModelResetter/RNNCallback/RNNRegularizer drive our model."
    torch.manual_seed(0)
    stream = [torch.randint(0, 60, (200,)) for _ in range(4)]
    dls = fa.DataLoaders(fa.LMDataLoader(stream, bs=4, seq_len=10, shuffle=True), fa.LMDataLoader(stream[:2], bs=4, seq_len=10))
    model = get_language_model(AWD_LSTM, 60, config=dict(awd_lstm_lm_config, **SMALL))
    learn = fa.Learner(dls, model, loss_func=fa.CrossEntropyLossFlat(), cbs=fa.rnn_cbs(alpha=2., beta=1.),
                       splitter=awd_lstm_lm_split)
    with learn.no_bar(), learn.no_logging(): learn.fit_one_cycle(1, 1e-2)
    assert len(learn.opt.param_groups) == 4
    assert all(torch.isfinite(torch.tensor(v)) for v in learn.validate())


def test_bf16_autocast_forward_and_ar_tar_float32():
    lm, _ = lm_pair()
    x = torch.randint(0, 60, (2, 6))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        dec, raw, out = lm(x)
        loss = ar_tar_loss(out, raw, 2., 1.)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    big = torch.full((2, 3, 4), 300., dtype=torch.float16)
    assert torch.isinf(big.pow(2).mean()) and ar_tar_loss(big, big) == 2. * 300. ** 2


def test_ar_tar_equals_fastai_regularizer():
    torch.manual_seed(0)
    out, raw = torch.randn(4, 9, 8), torch.randn(4, 9, 8)
    reg = fa.RNNRegularizer(alpha=2., beta=1.)
    class R: pass
    learn = R(); learn.loss_grad = torch.tensor(0.); learn.training = True
    learn.rnn = R(); learn.rnn.out, learn.rnn.raw_out = out, raw
    reg.learn = learn; reg.after_loss()
    assert torch.allclose(ar_tar_loss(out, raw, 2., 1.), learn.loss_grad, atol=1e-6)
    assert ar_tar_loss(out[:, :1], raw[:, :1], 0., 1.) == 0       # one time step: no TAR (fastai would take mean of nothing)


# ---------------------------------------------------------------- generation
def quadratic_generate(model, ids, n_words, temperature=1., min_p=None):
    "fastai's `LMLearner.predict` loop: reset, read the whole text, sample the next word."
    ids = torch.tensor(ids)
    model.eval()
    for _ in range(n_words):
        model.reset()
        with torch.no_grad(): res = F.softmax(model(ids[None])[0][0, -1], dim=-1)
        res[0] = 0.
        if min_p is not None and (res >= min_p).sum() > 0: res[res < min_p] = 0.
        if temperature != 1.: res.pow_(1 / temperature)
        ids = torch.cat([ids, torch.multinomial(res, 1)])
    return ids


@pytest.mark.parametrize('temperature,min_p', [(1., None), (0.7, 0.01), (1.5, None)])
def test_generate_same_words_as_fastai_recipe(temperature, min_p):
    ours, theirs = lm_pair()
    prompt = [2, 5, 7, 9, 11]
    torch.manual_seed(5); a = generate(ours, prompt, 30, temperature=temperature, min_p=min_p)
    torch.manual_seed(5); b = quadratic_generate(theirs, prompt, 30, temperature=temperature, min_p=min_p)
    assert torch.equal(a, b)
    torch.manual_seed(5); c = generate(theirs, prompt, 30, temperature=temperature, min_p=min_p)  # works on fastai's model too
    assert torch.equal(a, c)


def test_generate_is_linear_and_restores_mode():
    ours, _ = lm_pair()
    seen = []
    h = ours[0].register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    ours.train()
    out = generate(ours, list(range(2, 22)), 50)
    h.remove()
    assert seen == [20] + [1] * 49                 # the prompt once, then one token per new word
    assert ours.training and len(out) == 70 and out[:20].tolist() == list(range(2, 22))
    assert 0 not in out[20:].tolist()              # no_unk
    assert generate(ours, [3], 0).tolist() == [3]


def test_generate_min_p_warns_when_nothing_left():
    ours, _ = lm_pair()
    with pytest.warns(UserWarning, match='no item with probability >= 0.99'): generate(ours, [3, 4], 1, min_p=0.99)


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize('kw,msg', [
    (dict(vocab_sz=0), 'vocab_sz must be an int >= 1, got 0'),
    (dict(n_layers=0), 'n_layers must be an int >= 1, got 0'),
    (dict(n_hid=-3), 'n_hid'),
    (dict(hidden_p=1.), r'hidden_p must be a dropout probability in \[0, 1\), got 1.0'),
    (dict(input_p=-0.1), 'input_p'),
    (dict(embed_p=float('nan')), 'embed_p'),
    (dict(weight_p=1.2), 'weight_p'),
    (dict(emb_sz=5, bidir=True), 'bidir needs even'),
])
def test_awd_lstm_bad_input(kw, msg):
    args = {**dict(vocab_sz=10, emb_sz=4, n_hid=6, n_layers=2), **kw}
    with pytest.raises(ValueError, match=msg): AWD_LSTM(**args)


def test_token_ids_out_of_range():
    lm, _ = lm_pair()
    with pytest.raises(ValueError, match=r'\[0, 60\).*got min 3, max 60'): lm(torch.tensor([[3, 60]]))
    with pytest.raises(ValueError, match='got min -1'): lm(torch.tensor([[-1, 5]]))
    with pytest.raises(ValueError, match='integer tensor'): lm(torch.tensor([[1., 2.]]))
    with pytest.raises(ValueError, match=r'\(bs, seq_len\)'): lm[0](torch.tensor([1, 2]))
    with pytest.raises(ValueError, match='max 99'): generate(lm, [3, 99], 2)


def test_other_bad_input():
    with pytest.raises(ValueError, match=r'\[0, 1\), got 1'): dropout_mask(torch.empty(0), (2, 2), 1)
    with pytest.raises(ValueError, match='p must'): RNNDropout(1.5)
    with pytest.raises(ValueError, match='3 layer sizes need 2 dropout values, got 1'): PoolingLinearClassifier([6, 4, 2], [0.1], 5)
    with pytest.raises(ValueError, match='drop_mult'): get_language_model(AWD_LSTM, 10, drop_mult=-1)
    with pytest.raises(ValueError, match='input_p.*got 1.25'): get_language_model(AWD_LSTM, 10, drop_mult=5)
    with pytest.raises(ValueError, match='arch must be'): get_language_model(fa.AWD_LSTM, 10)
    with pytest.raises(ValueError, match='n_class'): get_text_classifier(AWD_LSTM, 10, 0)
    lm, _ = lm_pair()
    with pytest.raises(ValueError, match='temperature'): generate(lm, [3], 2, temperature=0)
    with pytest.raises(ValueError, match='min_p'): generate(lm, [3], 2, min_p=1.5)
    with pytest.raises(ValueError, match='non-empty'): generate(lm, [], 2)
    with pytest.raises(ValueError, match='n_words'): generate(lm, [3], -1)

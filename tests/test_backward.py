"Backward models: fastai's backward WT103 files through the safe loader, the direction recorded with the weights, reversed batches equal fastai's, the forward+backward ensemble, backward training on the `tiny` profile."
import contextlib, io, json, pickle
import numpy as np
import pytest
import torch
from fastai.data.core import DataLoaders
from fastai.data.external import URLs
import fastai.text.data as fdata
from ulmfit_lib.awd_lstm import AWD_LSTM, awd_lstm_lm_config
from ulmfit_lib.lm_data import lm_dls_from_ids, lm_dls_from_corpus, TextIds
from ulmfit_lib.clas_data import SortedDL, TextDataLoaders, corpus_labels
from ulmfit_lib.corpus import tokenize_corpus
from ulmfit_lib.numericalize import corpus_vocab, numericalize_corpus
from ulmfit_lib.learner import (language_model_learner, text_classifier_learner, get_encoder, save_lm_pretrained,
                                recorded_direction, dls_backwards, safe_torch_load)
from ulmfit_lib.inference import save_classifier, load_classifier, EnsembleClassifier, CONFIG_FILE, VOCAB_FILE
import ulmfit_lib.inference as inf
from ulmfit_lib.predict import main as predict_main

TINY = dict(awd_lstm_lm_config, emb_sz=8, n_hid=16, n_layers=2)
CLAS = dict(emb_sz=8, n_hid=16, n_layers=2)
VOCAB = ['xxunk', 'xxpad', 'xxbos', 'xxeos', 'xxfld', 'xxrep', 'xxwrep', 'xxup', 'xxmaj'] + [f'w{i}' for i in range(15)]


def _ids(n_docs=24, seed=0):
    rng = np.random.default_rng(seed)
    lens = rng.integers(5, 30, n_docs)
    return rng.integers(9, len(VOCAB), lens.sum()).astype(np.int32), np.r_[0, np.cumsum(lens)].astype(np.int64)


def _clas_dls(train, valid, vocab, bs=4, seq_len=72, backwards=False, classes=('neg', 'pos')):
    "`SortedDL`s over `TextIds` with one `bs` for both loaders and seed 0 (`clas_dls_from_ids` doubles the valid `bs`)."
    def dl(t, shuffle):
        ids, offs, y = t
        ds = TextIds.from_ids(ids, offs, y, list(vocab), list(classes))
        return SortedDL(ds, bs=bs, shuffle=shuffle, seed=0 if shuffle else None, seq_len=seq_len, vocab=list(vocab), backwards=backwards)
    dls = DataLoaders(dl(train, True), dl(valid, False))
    dls.c = len(classes)
    return dls


def _wt103_folders(tmp_path):
    "A stand-in for fastai's two WT103 archives: a tiny LM per direction in fastai's exact files (no direction record)."
    from fastai.text.all import get_language_model as fa_glm, AWD_LSTM as FA
    res = {}
    for seed, (url, name) in enumerate([(URLs.WT103_FWD, 'fwd'), (URLs.WT103_BWD, 'bwd')]):
        d = tmp_path/f'wt103-{name}'; d.mkdir()
        torch.manual_seed(seed)
        torch.save(fa_glm(FA, len(VOCAB), config=TINY).state_dict(), d/f'lstm_{name}.pth')
        with open(d/'itos_wt103.pkl', 'wb') as f: pickle.dump(VOCAB, f)
        res[url] = d
    return res


def _patch_untar(monkeypatch, folders):
    import fastai.data.external as ext, fastai.text.learner as ftl
    def fake(url, c_key='data', **kw): return folders[url]
    monkeypatch.setattr(ext, 'untar_data', fake); monkeypatch.setattr(ftl, 'untar_data', fake)


# --- 1. fastai's backward WikiText-103 files

def test_backward_wt103_through_the_safe_loader(tmp_path, monkeypatch):
    "`pretrained=True` on reversed loaders loads `URLs.WT103_BWD` (as fastai with `backwards=True`), read with weights_only."
    folders = _wt103_folders(tmp_path)
    _patch_untar(monkeypatch, folders)
    dls = lm_dls_from_ids(TextIds.from_ids(*_ids(), vocab=VOCAB), bs=4, seq_len=8, backwards=True)
    learn = language_model_learner(dls, AWD_LSTM, config=TINY, path=tmp_path)    # the direction comes from the loaders
    assert learn.backwards and learn.pretrained_from == str(folders[URLs.WT103_BWD]/'lstm_bwd.pth')
    from fastai.text.all import language_model_learner as fa_lml, AWD_LSTM as FA
    fa = fa_lml(dls, FA, config=TINY, backwards=True, path=tmp_path)
    for k, v in fa.model.state_dict().items(): torch.testing.assert_close(learn.model.state_dict()[k], v)
    y = np.arange(24) % 2
    clas = text_classifier_learner(_clas_dls((*_ids(), y), (*_ids(), y), VOCAB, backwards=True), AWD_LSTM, config=CLAS, path=tmp_path)
    assert clas.backwards and clas.pretrained_from.endswith('lstm_bwd.pth')
    for k, v in get_encoder(clas.model).state_dict().items(): torch.testing.assert_close(v, fa.model[0].state_dict()[k])
    # the same safe loader: pickled code in the backward archive is refused
    class Evil:
        def __reduce__(self): return (print, ('pwned',))
    torch.save({'0.encoder.weight': torch.zeros(2, 2), 'x': Evil()}, folders[URLs.WT103_BWD]/'lstm_bwd.pth')
    with pytest.raises(pickle.UnpicklingError, match='lstm_bwd.pth'): language_model_learner(dls, AWD_LSTM, config=TINY, path=tmp_path)


# --- 2. the direction travels with the weights

def test_direction_is_recorded_and_checked(tmp_path):
    ids, offs = _ids()
    fwd_lm = language_model_learner(lm_dls_from_ids(TextIds.from_ids(ids, offs, vocab=VOCAB), bs=4, seq_len=8), AWD_LSTM, config=TINY, pretrained=False, path=tmp_path)
    bwd_lm = language_model_learner(lm_dls_from_ids(TextIds.from_ids(ids, offs, vocab=VOCAB), bs=4, seq_len=8, backwards=True), AWD_LSTM, config=TINY,
                                    pretrained=False, path=tmp_path)
    assert (fwd_lm.backwards, bwd_lm.backwards) == (False, True)
    fwd_lm.save_encoder('enc_fwd'); bwd_lm.save_encoder('enc_bwd')
    y = np.arange(len(offs) - 1) % 2
    clas = lambda b: text_classifier_learner(_clas_dls((ids, offs, y), (ids, offs, y), VOCAB, backwards=b), AWD_LSTM, config=CLAS,
                                             pretrained=False, path=tmp_path)
    with pytest.raises(ValueError, match='enc_fwd.pth holds weights trained forwards, but this model reads text backwards'): clas(True).load_encoder('enc_fwd')
    with pytest.raises(ValueError, match='enc_bwd.pth holds weights trained backwards .* but this model reads text forwards'): clas(False).load_encoder('enc_bwd')
    clas(True).load_encoder('enc_bwd'); clas(False).load_encoder('enc_fwd')
    # fastai reads our encoder file as is; fastai's own files (no record) load into either direction
    from fastai.text.all import get_language_model as fa_glm, AWD_LSTM as FA
    fa_enc = fa_glm(FA, len(VOCAB), config=TINY)[0]
    fa_enc.load_state_dict(torch.load(tmp_path/'models'/'enc_bwd.pth', weights_only=False))
    torch.save(fa_enc.state_dict(), tmp_path/'models'/'enc_fastai.pth')
    clas(True).load_encoder('enc_fastai'); clas(False).load_encoder('enc_fastai')
    # whole checkpoints and pretrained files too
    bwd_lm.save('lm_bwd')
    with pytest.raises(ValueError, match='lm_bwd.pth holds weights trained backwards'): fwd_lm.load('lm_bwd', with_opt=False)
    wf, vf = save_lm_pretrained(bwd_lm, 'gen_bwd')
    assert recorded_direction(safe_torch_load(wf)) is True
    fa_glm(FA, len(VOCAB), config=TINY).load_state_dict(torch.load(wf, weights_only=True))     # still fastai's format
    with pytest.raises(ValueError, match='gen_bwd.pth holds weights trained backwards'): fwd_lm.load_pretrained(wf, vf)
    # reversed loaders with backwards=False: the flag was forgotten
    with pytest.raises(ValueError, match='pass backwards=True'):
        language_model_learner(bwd_lm.dls, AWD_LSTM, config=TINY, backwards=False, pretrained=False)


# --- 3. reversed batches equal fastai's

def test_reversed_batches_equal_fastai():
    "The recipe's loaders (`lm_dls_from_ids`, `SortedDL` over ids) with `backwards=True` give fastai's batches of the reversed texts."
    from fastai.text.data import LMDataLoader as FaLM, reverse_text, Pad_Chunk
    ids, offs = _ids(n_docs=30, seed=3)
    docs = [torch.as_tensor(ids[a:b].astype(np.int64)) for a, b in zip(offs[:-1], offs[1:])]
    dls = lm_dls_from_ids(TextIds.from_ids(ids, offs, vocab=VOCAB), bs=3, seq_len=7, backwards=True, valid_pct=0.5)
    val_docs = [torch.as_tensor(d) for d in np.split(dls.valid.dataset.buf, np.cumsum(dls.valid.dataset.lens)[:-1])]
    theirs = list(FaLM([reverse_text(d) for d in val_docs], bs=3, seq_len=7))
    ours = list(dls.valid)
    assert len(ours) == len(theirs)
    for (x, y), (a, b) in zip(ours, theirs): assert torch.equal(x, a) and torch.equal(y, b)
    y = np.arange(30) % 2
    ours = list(_clas_dls((ids, offs, y), (ids, offs, y), VOCAB, bs=4, seq_len=5, backwards=True).valid)
    theirs = list(fdata.SortedDL([(fdata.TensorText(reverse_text(d)), torch.tensor(l)) for d, l in zip(docs, y)], bs=4,
                                 before_batch=Pad_Chunk(seq_len=5)))
    assert len(ours) == len(theirs)
    for (x, t), (a, b) in zip(ours, theirs): assert torch.equal(x, a) and torch.equal(t, b)


def test_dls_backwards_sees_fastais_reverse_text(fastai_small_imdb):
    "fastai's `TextDataLoaders(backwards=True)` adds `reverse_text` to the pipeline: our learners read the direction from it."
    from fastai.text.all import TextDataLoaders as FaTDL
    ipath, _ = fastai_small_imdb
    f = FaTDL.from_folder(ipath, valid='test', backwards=True, n_workers=0, bs=8, seq_len=20)
    assert dls_backwards(f) and not dls_backwards(FaTDL.from_folder(ipath, valid='test', n_workers=0, bs=8, seq_len=20))
    assert text_classifier_learner(f, AWD_LSTM, config=CLAS, pretrained=False).backwards


# --- 4. the ensemble

@pytest.fixture(scope='module')
def two_directions(small_imdb, tmp_path_factory):
    "`(learn_fwd, learn_bwd, folder, texts)`: tiny classifiers on real reviews (our TextDataLoaders, backward one reversed), saved as an ensemble."
    ipath, cache = small_imdb
    kw = dict(valid='test', cache_dir=cache, n_workers=0, bs=8, seq_len=20)
    dls_f = TextDataLoaders.from_folder(ipath, **kw)
    dls_b = TextDataLoaders.from_folder(ipath, text_vocab=dls_f.vocab[0], backwards=True, **kw)
    path = tmp_path_factory.mktemp('l')
    learners = []
    for seed, dls in enumerate([dls_f, dls_b]):
        torch.manual_seed(seed)
        learn = text_classifier_learner(dls, AWD_LSTM, seq_len=20, config=CLAS, pretrained=False, path=path)
        for m in learn.model.modules():   # non-trivial BatchNorm statistics, as after training
            if isinstance(m, torch.nn.BatchNorm1d): m.running_mean.normal_(); m.running_var.uniform_(0.5, 2)
        learners.append(learn)
    folder = save_classifier(learners[0], tmp_path_factory.mktemp('m')/'ens', learn_bwd=learners[1])
    texts = [p.read_text() for p in sorted((ipath/'unsup').glob('*.txt'))[:10]] + ['Great!', 'Not good. Not good at all, really.']
    return *learners, folder, texts


def test_ensemble_is_the_average_of_the_two_directions(two_directions):
    learn_f, learn_b, folder, texts = two_directions
    assert (learn_f.backwards, learn_b.backwards) == (False, True)
    ens = load_classifier(folder)
    assert isinstance(ens, EnsembleClassifier) and ens.classes == ['neg', 'pos']
    fwd, bwd = load_classifier(folder/'fwd'), load_classifier(folder/'bwd')
    assert (fwd.backwards, bwd.backwards) == (False, True)
    assert json.loads((folder/'bwd'/CONFIG_FILE).read_text())['backwards'] is True
    p_f, p_b = fwd.predict_proba(texts, bs=4), bwd.predict_proba(texts, bs=4)
    np.testing.assert_allclose(ens.predict_proba(texts, bs=4), (p_f + p_b) / 2, atol=1e-6)
    assert not np.allclose(p_f, p_b, atol=1e-3)
    assert ens.predict(texts) == [ens.classes[i] for i in ((p_f + p_b) / 2).argmax(1)]


def test_backward_classifier_reads_reversed_text_as_its_learner(two_directions):
    "The saved backward classifier gives fastai's `get_preds` of its learner (loaders that reverse each text before padding)."
    learn_f, learn_b, folder, texts = two_directions
    bwd = load_classifier(folder/'bwd')
    learn_b.model.eval()
    expect, _ = learn_b.get_preds(dl=learn_b.dls.test_dl(texts))
    np.testing.assert_allclose(bwd.predict_proba(texts, bs=3), expect.numpy(), atol=1e-5)
    with torch.inference_mode():
        alone = np.stack([torch.softmax(learn_b.model(torch.as_tensor(d[::-1].copy())[None])[0], -1)[0].numpy()
                          for d in bwd.numericalize(texts)])
    np.testing.assert_allclose(bwd.predict_proba(texts), alone, atol=1e-5)
    # the forward classifier's files read forwards: not the same probabilities
    assert not np.allclose(inf.TextClassifier(bwd.model, bwd.vocab, bwd.classes).predict_proba(texts), alone, atol=1e-4)


def test_ensemble_refuses_mismatched_members(two_directions, tmp_path):
    learn_f, learn_b, folder, texts = two_directions
    with pytest.raises(ValueError, match='learn_bwd reads text forwards'): save_classifier(learn_f, tmp_path/'x', learn_bwd=learn_f)
    with pytest.raises(ValueError, match='learn reads text backwards'): save_classifier(learn_b, tmp_path/'x', learn_bwd=learn_b)
    fwd, bwd = load_classifier(folder/'fwd'), load_classifier(folder/'bwd')
    with pytest.raises(ValueError, match='same classes'):
        EnsembleClassifier([fwd, inf.TextClassifier(bwd.model, bwd.vocab, ['a', 'b'], backwards=True)])
    with pytest.raises(ValueError, match=r'same vocab: fwd and bwd differ'):
        EnsembleClassifier([fwd, inf.TextClassifier(bwd.model, bwd.vocab[:-1] + ['zzz'], bwd.classes, backwards=True)], names=['fwd', 'bwd'])
    import shutil
    shutil.copytree(folder, tmp_path/'e')
    v = json.loads((tmp_path/'e'/'bwd'/VOCAB_FILE).read_text()); v[12] = 'zzz'; (tmp_path/'e'/'bwd'/VOCAB_FILE).write_text(json.dumps(v))
    with pytest.raises(ValueError, match='same vocab: fwd and bwd differ'): load_classifier(tmp_path/'e')
    assert not (tmp_path/'x').exists()


def test_cli_on_an_ensemble_folder(two_directions, tmp_path):
    learn_f, learn_b, folder, texts = two_directions
    (tmp_path/'in.txt').write_text('\n'.join(texts[-2:]))
    out = io.StringIO()
    with contextlib.redirect_stdout(out), open(tmp_path/'in.txt') as f:
        import sys
        old, sys.stdin = sys.stdin, f
        try: assert predict_main([str(folder), '-']) == 0
        finally: sys.stdin = old
    rows = out.getvalue().splitlines()
    assert rows[0] == 'text_id,label,p_neg,p_pos,empty' and len(rows) == 3     # `empty`: issue 24, item 11
    assert [r.split(',')[-1] for r in rows[1:]] == ['false', 'false']
    np.testing.assert_allclose([[float(x) for x in r.split(',')[2:4]] for r in rows[1:]],
                               load_classifier(folder).predict_proba(texts[-2:]), atol=1e-5)


# --- 5. backward LM and classifier train on the `tiny` profile

def test_backward_lm_and_classifier_train_on_tiny(small_imdb, tmp_path):
    "Stage 2 and 3 on reversed text with the `tiny` profile's sizes: the losses fall, the encoder goes across, the direction is saved."
    from ulmfit_lib.profile import get_profile
    from fastai.metrics import accuracy
    p = get_profile('tiny')
    ipath, cache = small_imdb
    files = lambda d: sorted((ipath/d).glob('*/*.txt')) if d != 'unsup' else sorted((ipath/d).glob('*.txt'))
    trn = tokenize_corpus(files('train'), path=ipath, cache_dir=cache, n_workers=0, progress=False)
    val = tokenize_corpus(files('test'), path=ipath, cache_dir=cache, n_workers=0, progress=False)
    vocab = corpus_vocab(trn, min_freq=2, max_vocab=p.max_vocab)
    cfg = dict(awd_lstm_lm_config, emb_sz=p.emb_sz, n_hid=p.n_hid, n_layers=2)
    torch.manual_seed(0)
    lm = language_model_learner(lm_dls_from_corpus(trn, vocab, bs=p.bs, seq_len=p.seq_len, backwards=True), AWD_LSTM, config=cfg,
                                drop_mult=0.1, pretrained=False, path=tmp_path)
    assert lm.backwards
    loss0 = lm.validate()[0]
    lm.fit_one_cycle(2, 2e-2)
    assert lm.validate()[0] < loss0
    lm.save_encoder('enc_bwd')
    t = (*numericalize_corpus(trn, vocab), corpus_labels(trn))
    v = (*numericalize_corpus(val, vocab), corpus_labels(val))
    clas = text_classifier_learner(_clas_dls(t, v, vocab, bs=p.clas_bs, seq_len=p.seq_len, backwards=True), AWD_LSTM, seq_len=p.seq_len,
                                   config={k: cfg[k] for k in ('emb_sz', 'n_hid', 'n_layers')}, pretrained=False, path=tmp_path,
                                   metrics=accuracy).load_encoder('enc_bwd')
    for k, w in get_encoder(clas.model).state_dict().items(): torch.testing.assert_close(w, lm.model[0].state_dict()[k])
    clas.fit_one_cycle(1, 2e-2)
    clas.unfreeze(); clas.fit_one_cycle(1, 1e-2)
    assert np.isfinite(clas.recorder.values[-1][0])
    folder = save_classifier(clas, tmp_path/'clf_bwd', classes=['neg', 'pos'])
    assert load_classifier(folder).backwards


# --- the job: `ulmfit-imdb --bidirectional`

def test_bidirectional_job_on_tiny(imdb_path, tmp_path):
    "Both directions from one numericalized corpus, within one budget; the report's ensemble accuracy is the saved ensemble's."
    from ulmfit_lib.profile import get_profile
    from ulmfit_lib.imdb_data import prepare_imdb
    from ulmfit_lib.ulmfit import run_ulmfit
    p = get_profile('tiny')
    data = prepare_imdb(p, cache_dir=tmp_path/'tok')
    rep = run_ulmfit(p, out=tmp_path/'run', data=data, control=False, baseline=False, bidirectional=True, time_budget=60,
                     device='cpu', log=lambda s: None)
    assert [rep[k]['n_valid'] for k in ('classifier', 'classifier_bwd', 'ensemble')] == [20, 20, 20]
    assert set(rep['lm']) == set(rep['lm_bwd']) and 'fraction' in rep['lm_bwd'] and 'sec_per_batch' in rep['classifier_bwd']
    assert json.loads((tmp_path/'run'/'report.json').read_text())['ensemble'] == rep['ensemble']
    ens = load_classifier(tmp_path/'run'/'classifier')          # the safe folder holds both directions
    assert [m.backwards for m in ens.members] == [False, True]
    ids, offs, y = data.parts['valid']
    docs = [ids[a:b].astype(np.int64) for a, b in zip(offs[:-1], offs[1:])]
    probs = [m.predict_proba_ids(docs) for m in ens.members]
    acc = lambda pr: float((pr.argmax(1) == y).mean())
    assert (acc(probs[0]), acc(probs[1]), acc((probs[0] + probs[1]) / 2)) == pytest.approx(
        (rep['classifier']['accuracy'], rep['classifier_bwd']['accuracy'], rep['ensemble']['accuracy']))
    models = tmp_path/'run'/'models'
    for f, b in (('finetuned', False), ('finetuned_bwd', True), ('general_lm_bwd', True), ('classifier_bwd', True)):
        assert recorded_direction(safe_torch_load(models/f'{f}.pth')) is b, f


def test_bidirectional_flag(monkeypatch, tmp_path, capsys):
    import ulmfit_lib.ulmfit as U
    seen = {}
    def fake(p, **kw):
        seen.update(kw)
        return dict(profile=p.name, classifier={}, classifier_bwd={}, ensemble=dict(accuracy=1.0), total_seconds=0)
    monkeypatch.setattr(U, 'run_ulmfit', fake)
    assert U.main(['--profile', 'tiny', '--out', str(tmp_path/'o'), '--bidirectional', '--device', 'cpu']) == 0
    assert seen['bidirectional'] is True and '"ensemble"' in capsys.readouterr().out
    assert U.main(['--profile', 'tiny', '--out', str(tmp_path/'o'), '--device', 'cpu']) == 0 and seen['bidirectional'] is False

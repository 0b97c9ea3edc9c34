"Issue 22: a pretrained stage 1 in fastai's WikiText-103 format, proved offline with a tiny model trained on real reviews."
import hashlib, io, os, pickle, subprocess, sys, tarfile, time
from pathlib import Path
import pytest
import torch
from ulmfit_lib.awd_lstm import AWD_LSTM, awd_lstm_lm_config
from ulmfit_lib.learner import dls_vocab, language_model_learner
from ulmfit_lib.pretrained import (WT103_ENV, PretrainedUnavailable, check_pretrained_config, load_pretrained_lm,
                                   resolve_pretrained, save_pretrained_archive, wt103_url, wt103_cached)

TINY = dict(awd_lstm_lm_config, emb_sz=16, n_hid=32, n_layers=3)
OFFLINE = {'HTTPS_PROXY': 'http://127.0.0.1:9', 'HTTP_PROXY': 'http://127.0.0.1:9', 'https_proxy': 'http://127.0.0.1:9',
           'http_proxy': 'http://127.0.0.1:9', 'NO_PROXY': '', 'no_proxy': ''}   # every request refused at once: no network


@pytest.fixture(scope='session')
def imdb_lm(imdb_path, tmp_path_factory):
    "Loaders of a language model on 150 real `train` reviews, with their own vocab"
    from ulmfit_lib.data import imdb_sample
    from ulmfit_lib.corpus import tokenize_corpus
    from ulmfit_lib.numericalize import corpus_vocab
    from ulmfit_lib.lm_data import lm_dls_from_corpus
    s = imdb_sample(imdb_path, n_train=150, n_valid=0, seed=11)
    corpus = tokenize_corpus(s.train, cache_dir=tmp_path_factory.mktemp('tok'), progress=False, n_workers=1)
    return lm_dls_from_corpus(corpus, corpus_vocab(corpus, min_freq=2), bs=8, seq_len=32, valid_pct=0.1, seed=1)


@pytest.fixture
def fastai_home(tmp_path, monkeypatch):
    "fastai's config and `untar_data` cache under a temporary `FASTAI_HOME`; no WT103 variable set"
    from fastai.data.external import fastai_cfg
    monkeypatch.setenv('FASTAI_HOME', str(tmp_path/'fastai_home'))
    for k in WT103_ENV.values(): monkeypatch.delenv(k, raising=False)
    fastai_cfg.cache_clear()
    yield tmp_path/'fastai_home'
    monkeypatch.undo(); fastai_cfg.cache_clear()


def test_archive_layout(wt103_tiny, tmp_path):
    "fastai's member names, fastai's state-dict keys in fastai's order, a plain pickled list of str"
    import fastai.text.all as fa
    arch, gen = wt103_tiny
    with tarfile.open(arch) as tf:
        assert sorted(tf.getnames()) == ['wt103-fwd', 'wt103-fwd/itos_wt103.pkl', 'wt103-fwd/lstm_fwd.pth']
        itos = pickle.load(tf.extractfile('wt103-fwd/itos_wt103.pkl'))
        sd = torch.load(io.BytesIO(tf.extractfile('wt103-fwd/lstm_fwd.pth').read()), weights_only=True)
    assert itos == dls_vocab(gen.dls)[0] and all(isinstance(w, str) for w in itos)
    theirs = fa.get_language_model(fa.AWD_LSTM, len(itos), config=TINY).state_dict()
    assert list(sd) == list(theirs) and all(sd[k].shape == theirs[k].shape for k in sd)
    for k, v in gen.model.state_dict().items(): assert torch.equal(sd[k], v), k
    bwd = save_pretrained_archive(gen, tmp_path/'wt103-bwd.tgz', backwards=True)
    with tarfile.open(bwd) as tf: assert sorted(tf.getnames())[1:] == ['wt103-bwd/itos_wt103.pkl', 'wt103-bwd/lstm_bwd.pth']
    with pytest.raises(ValueError, match='lstm_bwd.pth'):   # a forward model never takes the backward file
        resolve_pretrained(bwd, cache_dir=tmp_path/'c')


def test_rows_after_loading(wt103_tiny, imdb_lm, tmp_path):
    "Words in both vocabs keep the archive's rows; new words start at the mean row (as fastai's `match_embeds`)"
    from fastai.text.learner import match_embeds as fa_match_embeds
    arch, _ = wt103_tiny
    files = resolve_pretrained(arch, cache_dir=tmp_path/'models')
    assert files.source == 'path' and files.weights.name == 'lstm_fwd.pth' and (tmp_path/'models').is_dir()
    wgts, itos = check_pretrained_config(files, TINY)
    learn = language_model_learner(imdb_lm, AWD_LSTM, config=TINY, pretrained=False, path=tmp_path)
    info = load_pretrained_lm(learn, files, config=TINY)
    vocab, o2i = dls_vocab(imdb_lm)[0], {w: i for i, w in enumerate(itos)}
    shared = [i for i, w in enumerate(vocab) if w in o2i]
    new = [i for i, w in enumerate(vocab) if w not in o2i]
    assert info.vocab_overlap == len(shared) and shared and new
    assert (info.source, info.vocab_size, info.pretrained_vocab_size) == ('path', len(vocab), len(itos))
    assert info.weights_sha256 == hashlib.sha256(files.weights.read_bytes()).hexdigest()
    sd = learn.model.state_dict()
    for key in ('0.encoder.weight', '0.encoder_dp.emb.weight', '1.decoder.weight'):
        assert torch.equal(sd[key][shared], wgts['0.encoder.weight'][[o2i[vocab[i]] for i in shared]]), key
        assert torch.allclose(sd[key][new], wgts['0.encoder.weight'].mean(0).expand(len(new), -1)), key
    assert torch.equal(sd['1.decoder.bias'][shared], wgts['1.decoder.bias'][[o2i[vocab[i]] for i in shared]])
    assert torch.allclose(sd['1.decoder.bias'][new], wgts['1.decoder.bias'].mean(0).expand(len(new)))
    theirs = fa_match_embeds({k: v.clone() for k, v in wgts.items()}, itos, vocab)     # fastai's semantics, row for row
    for k, v in theirs.items(): assert torch.allclose(sd[k], v), k
    assert not any(p.requires_grad for p in learn.model[0].rnns[0].parameters())   # frozen to the head, as fastai


def test_fastai_untar_data_loads_our_archive(wt103_tiny, imdb_lm, fastai_home, tmp_path):
    "fastai's own `language_model_learner(pretrained=True)`, through `untar_data(URLs.WT103_FWD, c_key='model')` on the local archive"
    import shutil
    import fastai.text.all as fa
    arch, _ = wt103_tiny
    (fastai_home/'archive').mkdir(parents=True); shutil.copy(arch, fastai_home/'archive'/'wt103-fwd.tgz')
    assert wt103_cached() == fastai_home/'archive'/'wt103-fwd.tgz'
    theirs = fa.language_model_learner(imdb_lm, fa.AWD_LSTM, config=TINY, pretrained=True)
    assert wt103_cached() == fastai_home/'models'/'wt103-fwd'           # untar_data extracted it where fastai keeps models
    wt = resolve_pretrained('wt103')                                    # our `wt103` finds fastai's copy, no network
    assert (wt.source, wt.origin, wt.weights) == ('wt103', wt103_url(), fastai_home/'models'/'wt103-fwd'/'lstm_fwd.pth')
    ours = language_model_learner(imdb_lm, AWD_LSTM, config=TINY, pretrained=False, path=tmp_path)
    load_pretrained_lm(ours, wt, config=TINY)
    a, b = theirs.model.state_dict(), ours.model.state_dict()
    assert list(a) == list(b)
    for k in a: assert torch.allclose(a[k], b[k]), k


def test_wt103_variable(wt103_tiny, fastai_home, tmp_path, monkeypatch):
    "`ULMFIT_WT103_ARCHIVE` names a local copy of wt103-fwd.tgz: used without fastai's cache or the network"
    arch, _ = wt103_tiny
    monkeypatch.setenv('ULMFIT_WT103_ARCHIVE', str(arch))
    for k, v in OFFLINE.items(): monkeypatch.setenv(k, v)
    f = resolve_pretrained('wt103', cache_dir=tmp_path/'c')
    assert (f.source, f.origin, f.weights.name) == ('wt103', str(arch), 'lstm_fwd.pth')
    with pytest.raises(PretrainedUnavailable, match='ULMFIT_WT103_BWD_ARCHIVE'): resolve_pretrained('wt103', backwards=True)


def test_wt103_offline_fails_in_seconds(tmp_path):
    "Offline, nothing cached, no variable: one line naming the URL, the variable and `--pretrained none`; nothing downloaded"
    env = {**os.environ, 'FASTAI_HOME': str(tmp_path/'home'), **OFFLINE}
    for k in WT103_ENV.values(): env.pop(k, None)
    code = ('import sys, time\nfrom ulmfit_lib.pretrained import resolve_pretrained\nt = time.monotonic()\n'
            'try: resolve_pretrained("wt103")\nfinally: print(f"SECONDS {time.monotonic() - t:.3f}", file=sys.stderr)')
    r = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=300)
    lines = r.stderr.strip().splitlines()
    last, secs = lines[-1], float(next(l for l in lines if l.startswith('SECONDS ')).split()[1])
    assert r.returncode == 1 and last.startswith('ulmfit_lib.pretrained.PretrainedUnavailable: '), r.stderr
    for part in (wt103_url(), 'ULMFIT_WT103_ARCHIVE', '--pretrained none'): assert part in last, part
    assert secs < 10, secs          # from the call to the error (imports aside): the probe gives up after 5 s at most
    assert not (tmp_path/'home'/'models'/'wt103-fwd').exists() and not (tmp_path/'home'/'archive'/'wt103-fwd.tgz').exists()


class _Evil:
    def __init__(self, marker): self.marker = marker
    def __reduce__(self): return (os.system, (f'touch {self.marker}',))


def _tgz(path, members):
    with tarfile.open(path, 'w:gz') as tf:
        for n, b in members.items():
            ti = tarfile.TarInfo(n); ti.size = len(b); tf.addfile(ti, io.BytesIO(b))
    return path


def _pth(obj):
    b = io.BytesIO(); torch.save(obj, b); return b.getvalue()


@pytest.mark.parametrize('case', ['code_in_pth', 'code_in_itos', 'itos_dict', 'itos_ints', 'truncated', 'foreign', 'not_gzip',
                                  'vocab_size_mismatch'])
def test_bad_archives(case, wt103_tiny, tmp_path):
    "Each a `ValueError` naming the archive; no code executed; nothing extracted, no temporary folder left"
    arch, gen = wt103_tiny
    with tarfile.open(arch) as tf:
        good = {n: tf.extractfile(n).read() for n in ('wt103-fwd/lstm_fwd.pth', 'wt103-fwd/itos_wt103.pkl')}
    itos, marker = pickle.loads(good['wt103-fwd/itos_wt103.pkl']), tmp_path/'pwned'
    w, v = 'wt103-fwd/lstm_fwd.pth', 'wt103-fwd/itos_wt103.pkl'
    bad = tmp_path/f'{case}.tgz'
    if case == 'code_in_pth': _tgz(bad, {w: _pth({'0.encoder.weight': _Evil(marker)}), v: good[v]})
    elif case == 'code_in_itos': _tgz(bad, {w: good[w], v: pickle.dumps([_Evil(marker)])})
    elif case == 'itos_dict': _tgz(bad, {w: good[w], v: pickle.dumps({i: t for i, t in enumerate(itos)})})
    elif case == 'itos_ints': _tgz(bad, {w: good[w], v: pickle.dumps(list(range(len(itos))))})
    elif case == 'truncated': bad.write_bytes(arch.read_bytes()[:arch.stat().st_size * 2 // 3])
    elif case == 'foreign': _tgz(bad, {'imdb/README': b'IMDb', 'imdb/train/pos/0_9.txt': b'great'})
    elif case == 'not_gzip': bad.write_bytes(b'<html>404 Not Found</html>')
    elif case == 'vocab_size_mismatch': _tgz(bad, {w: good[w], v: pickle.dumps(itos[:-5])})
    with pytest.raises(ValueError, match=str(bad)): resolve_pretrained(bad, cache_dir=tmp_path/'cache')
    assert not marker.exists()
    assert list((tmp_path/'cache').iterdir()) == []


def test_bad_folder_and_paths(wt103_tiny, tmp_path):
    "A folder in fastai's layout is read in place with the same safe loaders; missing sources name themselves"
    arch, _ = wt103_tiny
    good = resolve_pretrained(arch, cache_dir=tmp_path/'c')
    d = tmp_path/'wt103-fwd'; d.mkdir()
    (d/'itos_wt103.pkl').write_bytes(good.vocab.read_bytes())
    (d/'lstm_fwd.pth').write_bytes(_pth({'x': _Evil(tmp_path/'pwned')}))
    files = resolve_pretrained(d)
    with pytest.raises(ValueError, match=str(d/'lstm_fwd.pth')): check_pretrained_config(files, TINY)
    assert not (tmp_path/'pwned').exists()
    (d/'lstm_fwd.pth').unlink()
    with pytest.raises(FileNotFoundError, match='lstm_fwd.pth'): resolve_pretrained(d)
    with pytest.raises(FileNotFoundError, match='nowhere.tgz'): resolve_pretrained(tmp_path/'nowhere.tgz')
    with pytest.raises(ValueError, match='.tgz'): resolve_pretrained(good.weights)    # a bare .pth is not an archive


@pytest.mark.parametrize('cfg,shape', [(dict(emb_sz=24), '24)'), (dict(n_hid=64), '(256, 64)'), (dict(), '400)'),
                                       (dict(n_layers=2), 'n_layers=2')])
def test_config_mismatch(wt103_tiny, tmp_path, cfg, shape):
    "Widths that do not fit: `ValueError` naming the file and both shapes, from the state dict alone"
    arch, _ = wt103_tiny
    files = resolve_pretrained(arch, cache_dir=tmp_path/'c')
    conf = dict(awd_lstm_lm_config, **cfg) if not cfg else dict(TINY, **cfg)
    with pytest.raises(ValueError) as e: check_pretrained_config(files, conf)
    msg = str(e.value)
    assert str(files.weights) in msg and shape in msg and 'emb_sz=16, n_hid=32, n_layers=3' in msg, msg
    if cfg.get('emb_sz'): assert 'has shape (' in msg and ', 16) in the file' in msg, msg


# ---- the job (issue 22, items 1, 2 and 5): `ulmfit-imdb --pretrained SOURCE`
TINY_SET = ['--set', 'n_layers=3', 'emb_sz=16', 'n_hid=32']


def _job(args, tmp_path, env=None, timeout=1800):
    "`ulmfit-imdb ARGS` in a subprocess (`python -m ulmfit_lib.ulmfit`: the console script's module); `(rc, stdout, stderr, seconds)`"
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, '-m', 'ulmfit_lib.ulmfit', *args], capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, **(env or {})}, cwd=tmp_path)
    return r.returncode, r.stdout, r.stderr, time.monotonic() - t0


def test_job_help_documents_pretrained():
    from ulmfit_lib.ulmfit import _parser
    h = ' '.join(_parser().format_help().split())
    for part in ('--pretrained SOURCE', '--pretrained-bwd SOURCE', 'wt103', 'ULMFIT_WT103_ARCHIVE', 'none'): assert part in h, part


@pytest.fixture(scope='session')
def tiny_jobs(wt103_tiny, tmp_path_factory):
    "The tiny job twice on the same data: stage 1 from the archive, and from scratch (`--pretrained none`); their reports"
    import json
    arch, _ = wt103_tiny
    tmp = tmp_path_factory.mktemp('jobs')
    reps = {}
    for name, src in (('pretrained', str(arch)), ('scratch', 'none')):
        rc, out, err, secs = _job(['--profile', 'tiny', '--pretrained', src, *TINY_SET, '--out', str(tmp/name), '--data-cache',
                                   str(tmp/'data'), '--no-control', '--no-baseline', '--device', 'cpu'], tmp)
        assert rc == 0, err[-3000:]
        reps[name] = json.loads((tmp/name/'report.json').read_text())
    return arch, reps


def test_job_from_pretrained_archive(tiny_jobs):
    "All stages run from the archive; the report names the source, the sha256 of the weights and the overlap"
    arch, reps = tiny_jobs
    g, s = reps['pretrained']['lm']['general'], reps['scratch']['lm']['general']
    files = resolve_pretrained(arch)           # the job's own extraction, reused
    assert (g['source'], g['origin'], g['weights_sha256']) == ('path', str(arch), hashlib.sha256(files.weights.read_bytes()).hexdigest())
    assert 0 < g['vocab_overlap'] <= g['vocab_size'] == reps['pretrained']['data']['vocab']
    assert 'accuracy' not in g and 'perplexity' not in g                  # stage 1 is not trained: its time is the load
    assert s['source'] == 'scratch' and 'weights_sha256' not in s and s['perplexity'] > 0
    for r in reps.values():
        assert r['lm']['texts'] == ['train'] and 0 <= r['classifier']['accuracy'] <= 1
    assert reps['pretrained']['config']['pretrained'] == str(arch) and reps['scratch']['config']['pretrained'] == 'none'


def test_pretrained_start_helps(tiny_jobs):
    "Stage 2 fine-tuned from the archive ends with a clearly lower perplexity than from a stage 1 trained on the job's own `unsup`"
    _, reps = tiny_jobs
    pre, scratch = reps['pretrained']['lm']['perplexity'], reps['scratch']['lm']['perplexity']
    assert pre < 0.8 * scratch, (pre, scratch)     # measured 49.5 vs 78.2 (issue 22's note)


def test_job_wt103_offline_exits_2_in_seconds(tmp_path):
    "`--pretrained wt103` offline with nothing cached and no variable: exit 2, one line, no run folder, within seconds"
    env = {'FASTAI_HOME': str(tmp_path/'home'), **OFFLINE, 'ULMFIT_WT103_ARCHIVE': '', 'ULMFIT_WT103_BWD_ARCHIVE': ''}
    rc, out, err, secs = _job(['--profile', 'tiny', '--pretrained', 'wt103', '--out', str(tmp_path/'run')], tmp_path, env)
    lines = err.strip().splitlines()
    assert rc == 2 and len(lines) == 1 and lines[0].startswith('ulmfit-imdb: error: '), err
    for part in (wt103_url(), 'ULMFIT_WT103_ARCHIVE', '--pretrained none'): assert part in lines[0], part
    assert secs < 300 and not (tmp_path/'run').exists(), secs    # python's start and imports included (a minute on loaded cores)


def test_job_width_mismatch_before_tokenization(wt103_tiny, tmp_path):
    "A 3-layer 16/32 archive with the tiny profile's 2 layers, or another width: exit 2 naming the file and both shapes, nothing written"
    arch, _ = wt103_tiny
    files = resolve_pretrained(arch)
    for extra, shape in (([], 'n_layers=2'), (['--set', 'n_layers=3', 'emb_sz=24'], '24)')):
        rc, out, err, secs = _job(['--profile', 'tiny', '--pretrained', str(arch), *extra, '--out', str(tmp_path/'run'),
                                   '--data-cache', str(tmp_path/'data')], tmp_path)
        assert rc == 2 and str(files.weights) in err and 'in the file and' in err and shape in err, err
        assert not (tmp_path/'run').exists() and not (tmp_path/'data').exists()   # refused before any tokenization

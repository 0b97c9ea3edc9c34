"""Data parallelism on fastai's engine, for real: two processes over loopback with the gloo backend (CPU).
Each test launches this file as two plain processes (`python tests/test_distributed.py SCENARIO RANK PORT OUT`), which is
what torchrun does, minus torchrun: a failing rank is then not killed by a launcher, the other must fail on its own.
Plus fast single-process tests of the sharding (ranks simulated)."""
import os, sys, json, socket, subprocess, time
from pathlib import Path
import numpy as np
import pytest
import torch

TINY = dict(emb_sz=8, n_hid=16, n_layers=2)
VOCAB = ['xxunk', 'xxpad', 'xxbos', 'xxeos', 'xxfld', 'xxrep', 'xxwrep', 'xxup', 'xxmaj'] + [f'w{i}' for i in range(23)]
BS, SEQ_LEN, WORLD = 4, 6, 2
TIMEOUT = 20      # the collective timeout of the workers (seconds)


def _ids(n_docs, seed):
    rng = np.random.default_rng(seed)
    lens = rng.integers(5, 30, n_docs)
    return rng.integers(2, len(VOCAB), lens.sum()).astype(np.int32), np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)


def _lm_dls(bs):
    from ulmfit_lib.lm_data import lm_dls_from_ids, TextIds
    return lm_dls_from_ids(TextIds.from_ids(*_ids(60, 0), vocab=VOCAB), bs=bs, seq_len=SEQ_LEN, valid_pct=0.25, seed=42)


def _clas_dls(bs):
    from ulmfit_lib.clas_data import clas_dls_from_ids
    from ulmfit_lib.lm_data import TextIds
    (ti, to), (vi, vo) = _ids(24, 1), _ids(19, 2)       # 19 reviews: the last step gives one rank a review more
    return clas_dls_from_ids(TextIds.from_ids(ti, to, np.arange(24) % 2, VOCAB), TextIds.from_ids(vi, vo, np.arange(19) % 3 % 2, VOCAB),
                             bs=bs, seed=3)


def _lm_learner(dls, path):
    from fastai.metrics import accuracy
    from ulmfit_lib.awd_lstm import AWD_LSTM, awd_lstm_lm_config
    from ulmfit_lib.learner import language_model_learner
    torch.manual_seed(0)
    return language_model_learner(dls, AWD_LSTM, config=dict(awd_lstm_lm_config, **TINY), pretrained=False, drop_mult=0.,
                                  metrics=accuracy, path=path)


def _clas_learner(dls, path):
    from fastai.metrics import accuracy
    from ulmfit_lib.awd_lstm import AWD_LSTM, awd_lstm_clas_config
    from ulmfit_lib.learner import text_classifier_learner
    torch.manual_seed(0)
    return text_classifier_learner(dls, AWD_LSTM, config=dict(awd_lstm_clas_config, **TINY), pretrained=False, drop_mult=0.,
                                   metrics=accuracy, path=path)


def _flat(model):
    return torch.cat([p.detach().reshape(-1).clone() for p in model.parameters()])


def worker(rank, port, out):
    """One rank: train/validate under `distributed`, save what it saw in `out/rank{rank}.pt`; then train again, where rank 1
    hangs at its second step (writing `out/hanging`): rank 0 must fail after the collective timeout."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(WORLD),
                      MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from fastai.callback.core import Callback
    from ulmfit_lib.distributed import distributed, init_distributed
    out = Path(out)
    init_distributed(timeout=TIMEOUT)
    rec = dict(xs=[], ys=[], params=[], grads=[])

    class Record(Callback):
        order = 100
        def before_batch(self):
            if self.training: rec['xs'].append(self.x.clone()); rec['ys'].append(self.y.clone())
        def after_backward(self):
            if len(rec['grads']) == 0: rec['grads'].append(torch.cat([p.grad.reshape(-1).clone() for p in self.learn.model.parameters()]))
        def after_step(self):
            rec['params'].append(_flat(self.learn.model))
            if rec.get('hang') and rank == 1 and len(rec['params']) == 2:
                (out/'hanging').write_text(str(time.time())); time.sleep(600)

    learn = _lm_learner(_lm_dls(BS), out/f'r{rank}')
    rec['init'] = {k: v.clone() for k, v in learn.model.state_dict().items()}
    with distributed(learn):
        learn.fit(1, 1e-2, cbs=Record())
        rec['lm_valid'] = [float(v) for v in learn.validate()]
    rec['lm_final'] = {k: v.clone() for k, v in learn.model.state_dict().items()}
    clas = _clas_learner(_clas_dls(BS), out/f'r{rank}')
    clas.freeze_to(-2)                                  # gradual unfreezing: frozen layers under DDP
    with distributed(clas):
        clas.fit(1, 1e-2)
        rec['clas_wgts'] = {k: v.clone() for k, v in clas.model.state_dict().items()}
        rec['clas_valid'] = [float(v) for v in clas.validate()]
        rec['preds'], rec['targs'] = clas.get_preds()
    torch.save(rec, out/f'rank{rank}.pt')
    rec.update(hang=True, params=[])
    with distributed(learn): learn.fit(1, 1e-2, cbs=Record())
    (out/f'finished{rank}').touch()        # not reached by either rank


def _free_port():
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


@pytest.fixture(scope='module')
def ddp_run(tmp_path_factory):
    "Run the two ranks: `(records, rank 0's exit code, its stderr, seconds from rank 1 hanging to rank 0 exiting)`"
    out, port = tmp_path_factory.mktemp('ddp'), _free_port()
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    logs = [open(out/f'err{r}.txt', 'w+') for r in range(WORLD)]
    procs = [subprocess.Popen([sys.executable, __file__, str(r), str(port), str(out)], env=env, stdout=subprocess.DEVNULL,
                              stderr=logs[r]) for r in range(WORLD)]
    try:
        procs[0].wait(timeout=300); t_exit = time.time()
        if procs[1].poll() is None: procs[1].kill()
    finally:
        for p in procs:
            if p.poll() is None: p.kill()
    errs = [(out/f'err{r}.txt').read_text() for r in range(WORLD)]
    assert all((out/f'rank{r}.pt').exists() for r in range(WORLD)), '\n'.join(e[-3000:] for e in errs)
    hung = float((out/'hanging').read_text()) if (out/'hanging').exists() else None
    return ([torch.load(out/f'rank{r}.pt', weights_only=False) for r in range(WORLD)], procs[0].returncode, errs[0],
            None if hung is None else t_exit - hung)


def test_params_identical_every_step(ddp_run):
    (r0, r1), *_ = ddp_run
    assert len(r0['params']) == len(r1['params']) > 1
    for a, b in zip(r0['params'], r1['params']): assert torch.equal(a, b)
    assert not torch.equal(r0['params'][0], r0['params'][-1])          # it did train
    for k, v in r0['clas_wgts'].items(): assert torch.equal(v, r1['clas_wgts'][k]), k   # the classifier too (partly frozen)


def test_tokens_union_is_single_epoch(ddp_run, tmp_path):
    "The two ranks' batches, stacked, are one process's epoch with bs*2 rows: every token once, the same document order."
    (r0, r1), *_ = ddp_run
    single = _lm_dls(BS * WORLD).train
    batches = list(single)
    assert len(r0['xs']) == len(r1['xs']) == len(batches)
    for (x, y), x0, x1, y0, y1 in zip(batches, r0['xs'], r1['xs'], r0['ys'], r1['ys']):
        assert torch.equal(x, torch.cat([x0, x1])) and torch.equal(y, torch.cat([y0, y1]))
    seen = np.sort(torch.cat([torch.cat([a, b]) for a, b in zip(r0['xs'], r1['xs'])], 1).reshape(-1).numpy())
    assert np.array_equal(seen, np.sort(single.make_stream(single._order)[:single.bs * single.bl]))


def test_gradient_equals_single_process(ddp_run, tmp_path):
    "Dropout off: the averaged two-rank gradient of step 1 is one process's gradient on the stacked batch."
    from fastai.callback.core import Callback, CancelFitException
    (r0, r1), *_ = ddp_run
    assert torch.equal(r0['grads'][0], r1['grads'][0])
    learn = _lm_learner(_lm_dls(BS * WORLD), tmp_path)
    learn.model.load_state_dict(r0['init'])
    got = {}
    class Grab(Callback):
        def after_backward(self):
            got['x'] = self.x.clone()
            got['g'] = torch.cat([p.grad.reshape(-1) for p in self.learn.model.parameters()]); raise CancelFitException()
    learn.fit(1, 1e-2, cbs=Grab())
    assert torch.equal(got['x'], torch.cat([r0['xs'][0], r1['xs'][0]]))
    torch.testing.assert_close(r0['grads'][0], got['g'], rtol=1e-4, atol=1e-6)


def test_gathered_validation_equals_single(ddp_run, tmp_path):
    (r0, r1), *_ = ddp_run
    assert r0['lm_valid'] == r1['lm_valid']
    learn = _lm_learner(_lm_dls(BS * WORLD), tmp_path)
    learn.model.load_state_dict(r0['lm_final'])
    np.testing.assert_allclose(r0['lm_valid'], [float(v) for v in learn.validate()], rtol=1e-5)
    clas = _clas_learner(_clas_dls(BS * WORLD), tmp_path)
    clas.model.load_state_dict(r0['clas_wgts'])
    preds, targs = clas.get_preds()
    assert torch.equal(r0['targs'], targs) and torch.equal(r1['targs'], targs)    # 19 reviews, dataset order, each once
    torch.testing.assert_close(r0['preds'], preds, rtol=1e-4, atol=1e-6)
    acc = float((preds.argmax(1) == targs).float().mean())
    assert abs(acc - float((r0['preds'].argmax(1) == r0['targs']).float().mean())) < 1e-6


def test_failing_rank_does_not_hang(ddp_run):
    "Rank 1 hangs at a step of a second fit: rank 0 exits with an error after the collective timeout, not never."
    _, rc0, err0, secs = ddp_run
    assert secs is not None, err0[-3000:]
    assert rc0 != 0 and 'Error' in err0, err0[-3000:]
    assert secs < TIMEOUT + 30, secs


# ---- the job: `torchrun --nproc_per_node 2 -m ulmfit_lib.ulmfit` on the tiny profile ----

JOB_TINY = ['n_unsup=30', 'n_lm=30', 'n_train=30', 'n_valid=20', 'max_vocab=400', 'emb_sz=16', 'n_hid=32', 'bs=8',
            'seq_len=20', 'clas_bs=8', 'clas_epochs=[1,1,0,1]', 'lm1_epochs=2', 'lm2_epochs=2']   # tests/test_ulmfit.py's TINY
RUN_FILES = {'report.json', 'losses.json', 'stage1_lm_loss.png', 'stage2_lm_loss.png', 'stage3_clas_loss.png', 'models', 'classifier'}


@pytest.fixture(scope='module')
def torchrun(imdb_path, tmp_path_factory):
    "A corpus cache of the tiny profile (made once), and `run(*args)`: the job under torchrun with 2 ranks on it"
    from ulmfit_lib.ulmfit import main
    d = tmp_path_factory.mktemp('job')
    assert main(['--profile', 'smoke', '--corpus-cache', str(d/'cache'), '--make-cache', '--set', *JOB_TINY]) == 0
    env = dict(os.environ, OMP_NUM_THREADS='1', MPLBACKEND='Agg', PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    def run(*args):
        cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(WORLD),
               '-m', 'ulmfit_lib.ulmfit', '--profile', 'smoke', '--device', 'cpu', '--no-baseline',
               '--corpus-cache', str(d/'cache'), *args]
        return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=d, timeout=600)
    return d, run


def test_tiny_job_under_torchrun(torchrun):
    "Three stages and the control on 2 gloo ranks, with a time budget (the ranks must agree on it): one report, rank 0's"
    d, run = torchrun
    r = run('--out', str(d/'run'), '--time-budget', '300', '--set', *JOB_TINY)
    assert r.returncode == 0, r.stderr[-3000:]
    rep = json.loads((d/'run'/'report.json').read_text())
    assert rep['world_size'] == WORLD and rep['time_budget'] == 300
    for k in ('classifier', 'control'): assert 0 <= rep[k]['accuracy'] <= 1
    assert rep['lm']['tokens_per_s'] > 0 and rep['lm']['general']['tokens_per_s'] > 0
    assert {f.name for f in (d/'run').iterdir()} == RUN_FILES                      # no running.json, no temp leftovers
    assert {f.name for f in (d/'run'/'models').iterdir()} == {'general_lm.pth', 'general_lm.pkl', 'finetuned.pth', 'classifier.pth'}
    assert r.stdout.count('stage 1: LM accuracy') == 1 and r.stdout.count('"world_size"') == 0   # one log, rank 0's
    assert r.stdout.count('report: ') == 1 and r.stdout.count('"profile":') == 1


def test_world_larger_than_batches_under_torchrun(torchrun):
    "bs=300: one batch of LM rows for 2 ranks -> every rank says so (`ulmfit-imdb: error: ...`) and exits 2; no report"
    d, run = torchrun
    r = run('--out', str(d/'big'), '--set', *JOB_TINY, 'bs=300')
    assert r.returncode != 0
    assert r.stderr.count('ulmfit-imdb: error:') == WORLD, r.stderr[-3000:]
    assert r.stderr.count('world_size=2 is larger than the number of batches (1)') == WORLD
    assert 'exitcode: 2' in r.stderr
    assert not (d/'big'/'report.json').exists() and json.loads((d/'big'/'running.json').read_text())['status'] == 'failed'


def test_label_sweep_refused_under_ranks(monkeypatch, tmp_path):
    "--labels with WORLD_SIZE=2: a ValueError naming the flag and the world size, before joining any group"
    from ulmfit_lib.ulmfit import run_ulmfit
    monkeypatch.setenv('RANK', '0'); monkeypatch.setenv('WORLD_SIZE', '2')
    with pytest.raises(ValueError, match=r'--labels.*world_size=2'): run_ulmfit('tiny', out=tmp_path/'o', labels=[20])
    assert not (tmp_path/'o').exists()


# ---- single process: the shards, ranks simulated (fast) ----

def test_lm_shards_cover_stream_once():
    from ulmfit_lib.lm_data import LMDataLoader
    from ulmfit_lib.distributed import ShardedDL
    docs = [np.arange(i * 1000, i * 1000 + 17 + 5 * i) for i in range(30)]
    for W in (2, 3):
        kw = dict(seq_len=5, shuffle=True, seed=1)
        single = list(LMDataLoader(docs, bs=3 * W, **kw))
        ranks = [list(ShardedDL(LMDataLoader(docs, bs=3, **kw), rank=r, world_size=W)) for r in range(W)]
        assert all(len(o) == len(single) for o in ranks)
        for k, (x, y) in enumerate(single):
            assert torch.equal(x, torch.cat([o[k][0] for o in ranks])) and torch.equal(y, torch.cat([o[k][1] for o in ranks]))
        for o in ranks:                           # a rank's rows continue from batch to batch
            for (_, ya), (xb, _) in zip(o, o[1:]): assert torch.equal(ya[:, -1], xb[:, 0])


def test_sorted_shards_property():
    from ulmfit_lib.distributed import sorted_shards
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, bs, W = int(rng.integers(1, 60)), int(rng.integers(2, 9)), int(rng.integers(1, 5))
        order = rng.permutation(n)
        if W > -(-n // bs):
            with pytest.raises(ValueError, match=f'world_size={W} is larger than the number of batches'): sorted_shards(order, bs, W)
            continue
        sh = sorted_shards(order, bs, W)
        assert len({len(s) for s in sh}) == 1                                  # equal batch counts
        assert all(1 <= len(b) <= bs for s in sh for b in s)
        assert np.array_equal(np.concatenate([s[k] for k in range(len(sh[0])) for s in sh]), order)   # gathered: the order


def test_world_too_large():
    from ulmfit_lib.lm_data import LMDataLoader
    with pytest.raises(ValueError, match=r'world_size=9 is larger than the number of batches \(2\)'):
        LMDataLoader([np.arange(60)], bs=3, seq_len=10, world_size=9)


if __name__ == '__main__':
    worker(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])

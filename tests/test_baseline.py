"The TF-IDF baseline never sees held-out reviews; the label sweep's table has one well-formed row per label count."
import importlib.util, json
from pathlib import Path
import numpy as np
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
import ulmfit_lib.baseline as B
import ulmfit_lib.stages as S
from ulmfit_lib.baseline import tfidf_baseline
from ulmfit_lib.stages import Run
from ulmfit_lib.sweep import label_sweep, first_n
from ulmfit_lib.profile import get_profile
from ulmfit_lib.imdb_data import prepare_imdb, imdb_texts

TRAIN = [f'a {w} film, {w} acting {i}' for i in range(12) for w in ('great', 'awful')]
TRAIN_Y = [1, 0] * 12
VALID = ['great heldoutword film', 'awful heldoutword acting', 'heldoutword great', 'heldoutword awful']
VALID_Y = [1, 0, 1, 0]


@pytest.fixture
def fit_spy(monkeypatch):
    "Every text the vectorizer is fitted on and every row count logistic regression is fitted on."
    seen = dict(texts=[], rows=[])
    fit_transform, lr_fit = TfidfVectorizer.fit_transform, LogisticRegression.fit
    def spy_ft(self, raw, y=None):
        seen['texts'] += list(raw); return fit_transform(self, raw, y)
    def spy_fit(self, raw, y=None):
        seen['texts'] += list(raw); return TfidfVectorizer.fit_transform(self, raw, y) and self
    def spy_lr(self, X, y, *a, **k):
        seen['rows'].append(X.shape[0]); return lr_fit(self, X, y, *a, **k)
    monkeypatch.setattr(TfidfVectorizer, 'fit_transform', spy_ft)
    monkeypatch.setattr(TfidfVectorizer, 'fit', spy_fit)
    monkeypatch.setattr(LogisticRegression, 'fit', spy_lr)
    return seen


def test_baseline_never_sees_held_out(fit_spy):
    r = tfidf_baseline(TRAIN, TRAIN_Y, VALID, VALID_Y)
    assert fit_spy['texts'] and set(fit_spy['texts']) <= set(TRAIN)       # vocabulary and idf: training texts only
    assert not set(fit_spy['texts']) & set(VALID)
    assert fit_spy['rows'] and max(fit_spy['rows']) <= len(TRAIN)         # CV folds and the refit: training rows only
    assert r['n_train'] == len(TRAIN) and r['n_valid'] == len(VALID) and r['accuracy'] == 1.0
    assert r['C'] in B.BASELINE_CS and set(r) >= {'accuracy', 'n_train', 'n_valid', 'seconds', 'C'}


def test_baseline_bad_input():
    with pytest.raises(ValueError, match='24 train_texts but 23 train_labels'): tfidf_baseline(TRAIN, TRAIN_Y[:-1], VALID, VALID_Y)
    with pytest.raises(ValueError, match='two classes'): tfidf_baseline(TRAIN, [1] * len(TRAIN), VALID, VALID_Y)


def test_first_n():
    part = (np.arange(10), np.array([0, 3, 7, 10]), np.array([0, 1, 0], dtype=np.int8))
    ids, offs, y = first_n(part, 2)
    assert ids.tolist() == list(range(7)) and offs.tolist() == [0, 3, 7] and y.tolist() == [0, 1]
    with pytest.raises(ValueError, match='n=4: the part has 3 documents'): first_n(part, 4)


@pytest.fixture(scope='module')
def tiny_data(imdb_path):
    p = get_profile('tiny')
    return p, prepare_imdb(p), imdb_texts(p)


def test_label_sweep_schema(tiny_data, tmp_path, monkeypatch, fit_spy):
    p, data, texts = tiny_data
    calls = []
    lm_stage = S.lm_stage
    monkeypatch.setattr(S, 'lm_stage', lambda *a, **k: calls.append(a[1]) or lm_stage(*a, **k))
    rows = label_sweep(Run(data, p, tmp_path, 'cpu', log=lambda m: None), [40, 20], texts=texts, schedule=lambda p, n: p)
    assert calls == [['unsup'], ['lm']]                                   # stages 1-2 once for all label counts
    assert [r['n_labels'] for r in rows] == [20, 40]                      # one row per label count, ascending
    for r in rows:
        assert set(r) == {'n_labels', 'ulmfit', 'control', 'baseline'} and type(r['n_labels']) is int
        for k in ('ulmfit', 'control', 'baseline'): assert isinstance(r[k], float) and 0 <= r[k] <= 1, r
    saved = json.loads((tmp_path/'label_sweep.json').read_text())
    assert saved['labels'] == rows and saved['n_valid'] == 20 and set(saved['seconds']) == {'stage1', 'stage2'}
    assert (tmp_path/'label_sweep.png').read_bytes()[:4] == b'\x89PNG'
    # benchmarks/bench_label_sweep.py writes its report from this JSON: the writer and the schema must not drift apart
    spec = importlib.util.spec_from_file_location('bench_label_sweep', Path(__file__).parents[1]/'benchmarks'/'bench_label_sweep.py')
    bench = importlib.util.module_from_spec(spec); spec.loader.exec_module(bench)
    bench.write_results(saved, dict(start=1., end=1., min=1., max=1., mean=1.), tmp_path/'R.md', tmp_path/'label_sweep.png', ['--labels', '40,20'])
    md = (tmp_path/'R.md').read_text()
    assert f'LM accuracy {saved["lm"]["accuracy"]}, perplexity {saved["lm"]["perplexity"]}' in md, md
    assert '| 20 |' in md and '| 40 |' in md and 'no more than this job' in md
    # the baseline was fitted on the first N training reviews only, never on a held-out one
    valid = set(texts['valid'][0])
    assert fit_spy['texts'] and set(fit_spy['texts']) <= set(texts['train'][0][:40]) and not set(fit_spy['texts']) & valid


def test_label_sweep_bad_input(tiny_data, tmp_path):
    p, data, texts = tiny_data
    with pytest.raises(ValueError, match=r'labels must be an int in \[2, 40\], got 41'): label_sweep(Run(data, p, tmp_path), [20, 41], texts=texts)
    with pytest.raises(ValueError, match='labels is empty'): label_sweep(Run(data, p, tmp_path), [], texts=texts)
    wrong = dict(texts, valid=(texts['valid'][0], 1 - texts['valid'][1]))
    with pytest.raises(ValueError, match=r"texts\['valid'\] are not the reviews"): label_sweep(Run(data, p, tmp_path), [20], texts=wrong)
    assert not any(tmp_path.iterdir())                                    # nothing written, nothing trained


def test_job_reports_the_baseline_on_its_own_reviews(tiny_data, tmp_path, fit_spy):
    "`run_ulmfit` reports the baseline fitted on the classifier's training reviews only, scored on its held-out ones."
    from ulmfit_lib.ulmfit import run_ulmfit
    p, data, texts = tiny_data
    rep = run_ulmfit(p, out=tmp_path/'run', data=data, control=False, device='cpu', log=lambda m: None)
    b = rep['baseline']
    assert (b['n_train'], b['n_valid']) == (40, rep['classifier']['n_valid']) and 0 <= b['accuracy'] <= 1
    assert fit_spy['texts'] and set(fit_spy['texts']) <= set(texts['train'][0]) and not set(fit_spy['texts']) & set(texts['valid'][0])
    assert json.loads((tmp_path/'run'/'report.json').read_text())['baseline'] == b

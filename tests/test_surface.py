"Issue 23: a public surface a reader can hold. `__all__` lists what a reader of the book calls; internals stay importable."
import importlib
from pathlib import Path
import pytest

MODULES = ['basics', 'data', 'tokenize', 'corpus', 'numericalize', 'lm_data', 'clas_data', 'awd_lstm', 'learner', 'distributed',
           'baseline', 'pretrained', 'profile', 'imdb_data', 'stages', 'sweep', 'ulmfit', 'inference', 'interpret', 'predict']
INTERNAL = {'inference': ['RULES', 'read_weights', 'forward_long'], 'learner': ['safe_torch_load', 'dls_vocab', 'lm_widths'],
            'pretrained': ['wt103_url', 'extract_pretrained_archive'], 'stages': ['lm_stage', 'fit_budget'], 'basics': ['check_number']}


def _alls(): return {m: importlib.import_module(f'ulmfit_lib.{m}').__all__ for m in MODULES}


def test_every_module_is_listed():
    "The list above is the package: a new module must be counted too"
    found = {p.stem for p in Path(importlib.import_module('ulmfit_lib').__file__).parent.glob('*.py')}
    assert found - {'__init__', '_modidx', 'all'} == set(MODULES)


def test_surface_size_and_no_name_twice():
    n_fastai = sum(len(importlib.import_module(f'fastai.text.{m}').__all__)       # the yardstick: 78 in fastai 2.8
                   for m in ('core', 'data', 'models.core', 'models.awdlstm', 'learner'))
    alls = _alls()
    names = [n for a in alls.values() for n in a]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
    assert len(names) <= 2 * n_fastai, len(names)


@pytest.mark.parametrize('mod', sorted(INTERNAL))
def test_internals_stay_importable(mod):
    "Names out of `__all__` are still public in their module (`#| exporti`): other modules and tests import them by name"
    m, alls = importlib.import_module(f'ulmfit_lib.{mod}'), _alls()
    for n in INTERNAL[mod]: assert hasattr(m, n) and n not in alls[mod], n


def test_star_import_has_what_the_book_calls():
    ns = {}
    exec('from ulmfit_lib.all import *', ns)
    for n in ('language_model_learner', 'text_classifier_learner', 'TextBlock', 'AWD_LSTM', 'Tokenizer', 'load_classifier',
              'save_classifier', 'explain', 'get_wt103', 'get_imdb', 'untar_data', 'DataBlock', 'gradual_unfreeze', 'ShardedDL'):
        assert n in ns, n
    assert 'read_weights' not in ns and 'RULES' not in ns

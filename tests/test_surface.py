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


# ---------------------------------------------------------------- sizes of functions (issue 23)

def _n_params(fn):
    "Parameters of the `ast` function `fn`, `*args`/`**kwargs` one each, `self`/`cls` not counted"
    a = fn.args
    k = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + (a.vararg is not None) + (a.kwarg is not None)
    return k - (1 if a.args and a.args[0].arg in ('self', 'cls') else 0)


def _functions():
    "`(module, qualified name, parameters, lines)` of every function the package defines (AST: `self`/`cls` not counted)"
    import ast
    root = Path(importlib.import_module('ulmfit_lib').__file__).parent
    for f in sorted(root.glob('*.py')):
        tree = ast.parse(f.read_text(encoding='utf-8'))
        def walk(node, prefix):
            for n in ast.iter_child_nodes(node):
                if isinstance(n, ast.ClassDef): yield from walk(n, prefix + n.name + '.')
                elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    a, k = n.args, _n_params(n)
                    # a `@patch`ed function names its class in its first annotation: `def f(self: Cls, ...)`
                    ann = a.args[0].annotation if a.args else None
                    cls = ann.id + '.' if isinstance(ann, ast.Name) and a.args[0].arg in ('self', 'cls') and not prefix else prefix
                    yield f.stem, cls + n.name, k, n.end_lineno - n.lineno + 1
                    yield from walk(n, prefix + n.name + '.')
        yield from walk(tree, '')


# fastai's own signatures, kept as fastai has them so that the book's cells run unchanged: each may take as many
# parameters as fastai's (counted the same way, on fastai's source, `**kwargs` as one), and no more
FASTAI_SIGNATURES = {
    ('awd_lstm', 'AWD_LSTM.__init__'): ('fastai.text.models.awdlstm', 'AWD_LSTM.__init__'),
    ('awd_lstm', 'get_text_classifier'): ('fastai.text.models.core', 'get_text_classifier'),
    ('clas_data', 'TextDataLoaders.from_folder'): ('fastai.text.data', 'TextDataLoaders.from_folder'),
    ('clas_data', 'TextDataLoaders.from_df'): ('fastai.text.data', 'TextDataLoaders.from_df'),
    ('learner', 'text_classifier_learner'): ('fastai.text.learner', 'text_classifier_learner'),
}
# fastai's dataloaders take their options through `**kwargs` (`@delegates` shows 32 for `LMDataLoader`); ours name them,
# plus what fastai spreads over other classes (rank/world_size, variable bptt, id arrays): fewer than fastai's shown ones
FASTAI_DELEGATED = {('lm_data', 'LMDataLoader.__init__'): 'fastai.text.data.LMDataLoader',
                    ('clas_data', 'SortedDL.__init__'): 'fastai.text.data.SortedDL'}


def _fastai_count(mod, qual):
    import ast, inspect
    tree = ast.parse(inspect.getsource(importlib.import_module(mod)))
    parts = qual.split('.')
    for n in ast.walk(tree):
        if len(parts) == 2 and isinstance(n, ast.ClassDef) and n.name == parts[0]:
            n = next(m for m in n.body if isinstance(m, ast.FunctionDef) and m.name == parts[1])
        elif not (len(parts) == 1 and isinstance(n, ast.FunctionDef) and n.name == parts[0]): continue
        return _n_params(n)
    raise LookupError(qual)


def test_no_function_over_40_lines_or_8_parameters():
    import inspect
    too_long = [(m, q, n) for m, q, _, n in _functions() if n > 40]
    assert not too_long, too_long
    over = {(m, q): k for m, q, k, _ in _functions() if k > 8}
    ours = sorted(set(over) - set(FASTAI_SIGNATURES) - set(FASTAI_DELEGATED))
    assert not ours, [(o, over[o]) for o in ours]
    for key, (mod, qual) in FASTAI_SIGNATURES.items():
        if key in over: assert over[key] <= _fastai_count(mod, qual), (key, over[key], _fastai_count(mod, qual))
    for key, path in FASTAI_DELEGATED.items():
        mod, name = path.rsplit('.', 1)
        shown = len(inspect.signature(getattr(importlib.import_module(mod), name)).parameters)
        if key in over: assert over[key] < shown, (key, over[key], shown)

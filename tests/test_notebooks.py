"The chapters as a reader sees them on GitHub: every notebook stores the outputs of a real run, and none an error."
import json
from pathlib import Path
import pytest

NBS = sorted((Path(__file__).resolve().parents[1]/'nbs').glob('*.ipynb'))

def _known(names, why):
    "`NBS` with the notebooks `names` marked as known failures (strict: the mark must go once they are fixed)"
    return [pytest.param(nb, marks=pytest.mark.xfail(reason=why, strict=True)) if nb.stem in names else nb for nb in NBS]

PATHS_KNOWN = _known(set(), '')     # none left: chapter 10 was re-run at smoke after issue 26's fixes
TWICE_KNOWN = _known(set(), '')


def _code_cells(nb): return [c for c in json.loads(nb.read_text())['cells'] if c['cell_type'] == 'code']


@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.name)
def test_notebook_stores_outputs(nb):
    cells = _code_cells(nb)
    shown = [c for c in cells if c.get('outputs')]
    assert shown, f'{nb.name} stores no outputs: run `nbdev-test --save {nb}` (then nbdev-clean keeps them)'
    errors = [o.get('ename') for c in cells for o in c.get('outputs', []) if o.get('output_type') == 'error']
    assert not errors, f'{nb.name} stores errors: {errors}'


@pytest.mark.parametrize('nb', NBS, ids=lambda p: p.name)
def test_every_displayed_value_is_stored(nb):
    "A lesson cell that ends with a bare expression (what the reader is meant to look at) has its output stored."
    import ast
    missing = []
    for c in _code_cells(nb):
        src = ''.join(c['source'])
        if any(l.startswith(('#| export', '#| hide', '#| slow', '#| eval: false', '#|export', '#|hide')) for l in src.splitlines()): continue
        try: body = ast.parse(src.replace('%', '#')).body     # line magics are not Python
        except SyntaxError: continue
        last = body[-1] if body else None
        # a name, attribute, subscript, tuple...: always a value to show (a call may return None and show nothing)
        if isinstance(last, ast.Expr) and not isinstance(last.value, (ast.Call, ast.Await, ast.Constant)) \
           and not src.rstrip().endswith(';') and not c.get('outputs'):
            missing.append(src.splitlines()[-1][:80])
    assert not missing, f'{nb.name}: cells ending in a displayed value with no stored output: {missing}'


# A path of the machine that ran a notebook (a home, a temporary folder, a work tree) means nothing to a reader.
MACHINE_PATH = __import__('re').compile(r'(?<![\w.])(/tmp/|/var/folders/|/root/|/home/\w+/|/Users/\w+/|/work/|[A-Z]:\\\\Users)')

def _texts(o):
    "The text a reader sees of one stored output (streams, plain text, HTML, markdown; not images)."
    if o.get('output_type') == 'stream': yield ''.join(o.get('text', ''))
    for k, v in o.get('data', {}).items():
        if k.startswith('text/') or k == 'application/json': yield v if isinstance(v, str) else ''.join(v) if isinstance(v, list) else str(v)


@pytest.mark.parametrize('nb', PATHS_KNOWN, ids=lambda p: p.name)
def test_no_machine_paths_in_outputs(nb):
    hits = [m.group(0) + t[m.end():m.end() + 40].split('\n')[0] for c in _code_cells(nb) for o in c.get('outputs', [])
            for t in _texts(o) for m in MACHINE_PATH.finditer(t)]
    assert not hits, f'{nb.name} stores absolute paths of the machine that ran it: {hits[:5]}'


def test_no_machine_paths_in_committed_reports():
    root = Path(__file__).resolve().parents[1]
    hits = [f'{f.relative_to(root)}: {m.group(0)}' for f in root.glob('nbs/**/*.json') for m in MACHINE_PATH.finditer(f.read_text())]
    assert not hits, f'committed reports hold absolute paths: {hits[:5]}'


def _table_cells(o):
    "The cell texts of an HTML table in one output, whatever rendered it (`display(HTML(...))` or a DataFrame's repr)."
    import re
    h = o.get('data', {}).get('text/html', '')
    h = ''.join(h) if isinstance(h, list) else h
    return tuple(re.sub(r'\\s+', ' ', t).strip() for t in re.findall(r'<td[^>]*>(.*?)</td>', h, re.S))


@pytest.mark.parametrize('nb', TWICE_KNOWN, ids=lambda p: p.name)
def test_nothing_displayed_twice(nb):
    "A cell shows each table once (fastai's `show_batch` displays its table and returns None)."
    twice = []
    for c in _code_cells(nb):
        tables = [t for t in map(_table_cells, c.get('outputs', [])) if t]
        if len(tables) != len(set(tables)): twice.append(''.join(c['source']).splitlines()[-1][:80])
    assert not twice, f'{nb.name}: cells that show the same table twice: {twice}'

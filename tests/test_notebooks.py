"The chapters as a reader sees them on GitHub: every notebook stores the outputs of a real run, and none an error."
import json
from pathlib import Path
import pytest

NBS = sorted((Path(__file__).resolve().parents[1]/'nbs').glob('*.ipynb'))


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

#!/usr/bin/env python3
"""Write README.md from nbs/index.ipynb (what `nbdev-readme` does, without needing Quarto).

Markdown cells are copied; code cells become ```python blocks; cells marked `#| hide` are left out,
and directive lines (`#| ...`) are dropped. `--check` exits 1 if README.md is not up to date.
"""
import json, sys
from pathlib import Path

root = Path(__file__).resolve().parents[1]

def render(nb_path=root/'nbs'/'index.ipynb'):
    nb = json.loads(Path(nb_path).read_text())
    parts = ['<!-- WARNING: generated from nbs/index.ipynb by tools/readme.py; do not edit. -->']
    for c in nb['cells']:
        src = c['source'] if isinstance(c['source'], str) else ''.join(c['source'])
        lines = src.split('\n')
        if any(l.strip().replace(' ', '') in ('#|hide', '#|hide_input') for l in lines): continue
        lines = [l for l in lines if not l.lstrip().startswith('#|')]
        text = '\n'.join(lines).strip('\n')
        if not text.strip(): continue
        parts.append(text if c['cell_type'] == 'markdown' else f'```python\n{text}\n```')
    return '\n\n'.join(parts) + '\n'

if __name__ == '__main__':
    out = render()
    if '--check' in sys.argv:
        if (root/'README.md').read_text() != out:
            sys.exit('README.md is out of date: run `python tools/readme.py`')
    else: (root/'README.md').write_text(out)

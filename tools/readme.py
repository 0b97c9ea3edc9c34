#!/usr/bin/env python3
"""Write README.md from nbs/index.ipynb (what `nbdev-readme` does, without needing Quarto).

Markdown cells are copied; code cells become ```python blocks followed by their stored outputs (markdown as
it is, text in a plain block); `#| echo: false` shows only a cell's outputs; cells marked `#| hide` are left
out, and directive lines (`#| ...`) are dropped. `--check` exits 1 if README.md is not up to date.
"""
import json, re, sys
from pathlib import Path

root = Path(__file__).resolve().parents[1]

def render(nb_path=root/'nbs'/'index.ipynb'):
    nb = json.loads(Path(nb_path).read_text())
    parts = ['<!-- WARNING: generated from nbs/index.ipynb by tools/readme.py; do not edit. -->']
    for c in nb['cells']:
        src = c['source'] if isinstance(c['source'], str) else ''.join(c['source'])
        lines = src.split('\n')
        if any(l.strip().replace(' ', '') in ('#|hide', '#|hide_input') for l in lines): continue
        echo = not any(l.strip().replace(' ', '') == '#|echo:false' for l in lines)
        lines = [l for l in lines if not l.lstrip().startswith('#|')]
        text = '\n'.join(lines).strip('\n')
        if c['cell_type'] == 'markdown':
            if text.strip(): parts.append(from_nbs(text))
            continue
        if echo and text.strip(): parts.append(f'```python\n{text}\n```')
        parts += [o for o in map(render_output, c.get('outputs', [])) if o]
    return '\n\n'.join(parts) + '\n'

def from_nbs(md):
    "Relative links of markdown written in `nbs/` (images, files), made relative to the repository root, where README is."
    return re.sub(r'\]\((?![a-z]+:|/|#)([^)]+)\)', r'](nbs/\1)', md)

def render_output(o):
    "A stored output as README markdown: markdown as it is, text (a stream or a plain result) in a block; others left out."
    if o.get('output_type') == 'stream': text = o.get('text', '')
    else:
        data = o.get('data', {})
        if 'text/markdown' in data: return from_nbs(''.join(data['text/markdown']).strip('\n'))
        text = data.get('text/plain', '')
    text = (''.join(text) if isinstance(text, list) else text).strip('\n')
    return f'```\n{text}\n```' if text.strip() else ''

if __name__ == '__main__':
    out = render()
    if '--check' in sys.argv:
        if (root/'README.md').read_text() != out:
            sys.exit('README.md is out of date: run `python tools/readme.py`')
    else: (root/'README.md').write_text(out)

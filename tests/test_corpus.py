"Parallel tokenization and the token cache (ulmfit_lib.corpus): parity with fastai's folder/df functions and pipelines, cache key/atomicity/validation, bad input."
import json, os, pickle, shutil
from collections import Counter
from pathlib import Path
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st
import fastai.text.core as fc
from ulmfit_lib.data import imdb_sample
import ulmfit_lib.corpus as C
from ulmfit_lib.tokenize import (WordTokenizer, SubwordTokenizer, Tokenizer, tokenize1, text_proc_rules, text_postproc_rules)
from ulmfit_lib.corpus import tokenize_texts, tokenize_corpus, tokenize_folder, tokenize_df


@pytest.fixture(scope='module')
def theirs(): return fc.SpacyTokenizer()

def _L(x): return [list(o) for o in x]


# ---------------------------------------------------------------- parity with fastai

def test_tokenize_folder_parity(tmp_path, imdb_path):
    "Files, tokens, lengths and the Counter (with its insertion order) of fastai's tokenize_folder, n_workers=0."
    src = tmp_path/'corpus'
    s = imdb_sample(imdb_path, n_train=40, n_valid=20, seed=3)
    for f in s.train + s.valid:
        d = src/f.parent.parent.name/f.parent.name; d.mkdir(parents=True, exist_ok=True); shutil.copy(f, d/f.name)
    (src/'train'/'pos'/'crlf.txt').write_bytes(b'Line one\r\nLINE TWO\r\n\r\n  three!!!!')
    (src/'notes.md').write_text('not a review')
    out = fc.tokenize_folder(src, n_workers=0)
    fcount, flens = fc.load_pickle(out/'counter.pkl'), fc.load_pickle(out/'lengths.pkl')
    c = tokenize_folder(src, n_workers=2, cache_dir=tmp_path/'cache', progress=False)
    assert [str(f) for f in c.files] == [str(f.relative_to(src)) for f in fc.get_files(src, extensions=['.txt'])]
    assert list(c.counter().items()) == list(fcount.items())          # same counts, same tie order
    assert {str(f): int(n) for f, n in zip(c.files, c.lengths)} == flens
    for i, f in enumerate(c.files): assert c.doc(i) == (out/f).read_text(encoding='utf8').split(' ')
    # fastai with 2 workers: same multiset of counts (its insertion order depends on which worker finishes first)
    # (fastai's tokenize_folder ignores output_dir: it always writes beside the folder, here `corpus_tok`)
    assert out == tmp_path/'corpus_tok'
    out2 = fc.tokenize_folder(src, n_workers=2, skip_if_exists=False)
    assert out2 == out and fc.load_pickle(out2/'counter.pkl') == c.counter()
    assert C.list_files(src, folders='test') == [str(f) for f in fc.get_files(src, extensions=None, folders='test')]
    assert C.list_files(src, extensions=['.md', '.TXT']) == [str(f) for f in fc.get_files(src, extensions=['.md', '.TXT'])]
    loaded = C.load_corpus(c.cache_path)
    assert loaded.docs() == c.docs() and loaded.file_names == [str(f) for f in c.files]
    sub = tokenize_folder(src, folders=['test'], cache_dir=tmp_path/'cache', progress=False)
    assert len(sub) == 20 and all(f.parts[0] == 'test' for f in sub.files)


def test_tokenize_df_parity(imdb_texts, theirs, tmp_path):
    df = pd.DataFrame({'title': [t[:30] for t in imdb_texts[:50]], 'text': imdb_texts[:50], 'label': range(50)})
    for cols in (['text'], ['title', 'text']):
        fdf, fcount = fc.tokenize_df(df, cols, n_workers=0, tok=theirs)
        res = tokenize_df(df, cols, n_workers=2, cache_dir=tmp_path, progress=False)
        tdf, count = res                                                  # fastai's shape: (frame, Counter)
        assert list(tdf.columns) == list(fdf.columns) and tdf['label'].tolist() == fdf['label'].tolist()
        assert _L(tdf['text']) == _L(fdf['text']) and tdf['text_length'].tolist() == fdf['text_length'].tolist()
        assert list(count.items()) == list(fcount.items())
        c = res.corpus                                                    # the cached corpus behind it
        assert pickle.loads(pickle.dumps(res)).corpus.docs() == c.docs()
        assert c.docs() == _L(fdf['text'])
        assert list(c.counter().items()) == list(fcount.items())


@settings(max_examples=40, deadline=None)
@given(docs=st.lists(st.lists(st.sampled_from(list('ab AB.\n!') + ['xxmaj', '  ']), max_size=30).map(''.join), max_size=12),
       n_workers=st.sampled_from([0, 2]))
def test_corpus_matches_token_lists(docs, n_workers):
    "A TokCorpus is the token lists: docs, first-seen vocab, counts, offsets, and the numericalize remap."
    c = tokenize_corpus(docs, n_workers=n_workers, cache_dir=False, progress=False)
    toks = tokenize_texts(docs, n_workers=0)
    assert len(c) == len(docs) and c.docs() == toks
    seen = list(dict.fromkeys(t for d in toks for t in d))
    assert c.vocab == seen
    cnt = Counter()
    for d in toks: cnt.update(d)
    assert list(c.counter().items()) == list(cnt.items())
    assert c.ids.dtype == np.int32 and c.counts.dtype == np.int64 and c.offsets.dtype == np.int64
    assert c.lengths.tolist() == [len(d) for d in toks]
    new_vocab = sorted(set(seen))
    lut = np.array([new_vocab.index(t) for t in c.vocab], dtype=np.int64)
    assert [[new_vocab[i] for i in lut[c.doc_ids(k)]] for k in range(len(c))] == toks
    assert c.remap(new_vocab).tolist() == lut[c.ids].tolist()          # `TokCorpus.remap` is that lookup


def test_chunking_does_not_matter(imdb_texts):
    a = list(C.encode_parallel(imdb_texts[:30], WordTokenizer(), text_proc_rules, text_postproc_rules, 0, chunk_sz=1))
    b = list(C.encode_parallel(imdb_texts[:30], WordTokenizer(), text_proc_rules, text_postproc_rules, 2, chunk_sz=7))
    dec = lambda parts: [v[i] for v, ids, _ in parts for i in ids]
    assert dec(a) == dec(b)


# ---------------------------------------------------------------- cache

def _texts(n=30): return [f'Review number {i}. It was GREAT!!! really really really' for i in range(n)]

def test_cache_reused_and_keyed(tmp_path, monkeypatch):
    c1 = tokenize_corpus(_texts(), cache_dir=tmp_path, progress=False, n_workers=0)
    assert c1.cache_path.parent == tmp_path and isinstance(c1.ids, np.memmap)
    def boom(*a, **k): raise AssertionError('rebuilt instead of loading the cache')
    monkeypatch.setattr(C, '_build_corpus', boom)
    c2 = tokenize_corpus(_texts(), cache_dir=tmp_path, progress=False, n_workers=2)
    assert c2.cache_path == c1.cache_path and c2.docs() == c1.docs()
    monkeypatch.undo()
    # another text, other rules, another tokenizer setting, other post rules: another key
    keys = {c1.key}
    for kw in (dict(items=_texts()[:-1] + ['changed']), dict(rules=text_proc_rules[:-1]),
               dict(tok=WordTokenizer(special_toks=['xxbos'])), dict(post_rules=[])):
        items = kw.pop('items', _texts())
        c = tokenize_corpus(items, cache_dir=tmp_path, progress=False, n_workers=0, **kw)
        assert c.key not in keys; keys.add(c.key)
    assert sorted(p.name.startswith('tok-') for p in tmp_path.iterdir()) == [True] * 5


def test_cache_rule_edit_changes_key():
    def r(t): return t.lower()
    def r2(t): return t.upper()
    k1, _ = C.corpus_key(['a'], WordTokenizer(), [r], [])
    r2.__name__ = r2.__qualname__ = r.__qualname__
    k2, _ = C.corpus_key(['a'], WordTokenizer(), [r2], [])
    assert k1 != k2


def test_cache_key_stable_across_processes(tmp_path):
    "The key must not depend on memory addresses (e.g. of the nested functions inside replace_rep)."
    import subprocess, sys
    code = ("import ulmfit_lib.tokenize as T, ulmfit_lib.corpus as C; from pathlib import Path; "
            f"print(C.corpus_key(['a b', ''], T.WordTokenizer(), T.text_proc_rules, T.text_postproc_rules)[0])")
    keys = {subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True).stdout.strip() for _ in range(2)}
    keys.add(C.corpus_key(['a b', ''], WordTokenizer(), text_proc_rules, text_postproc_rules)[0])
    assert len(keys) == 1, keys


def test_cache_env_var(tmp_path, monkeypatch):
    monkeypatch.setenv('ULMFIT_CACHE', str(tmp_path/'envcache'))
    c = tokenize_corpus(['a b'], progress=False, n_workers=0)
    assert c.cache_path.parent == tmp_path/'envcache'


def test_file_change_invalidates(tmp_path):
    d = tmp_path/'data'; d.mkdir(); f = d/'a.txt'; f.write_text('one two')
    c1 = tokenize_folder(d, cache_dir=tmp_path/'c', progress=False)
    f.write_text('one two three'); os.utime(f, ns=(1, 1))
    c2 = tokenize_folder(d, cache_dir=tmp_path/'c', progress=False)
    assert c1.key != c2.key and c2.doc(0) == ['xxbos', 'one', 'two', 'three']


def test_interrupted_run_leaves_no_cache(tmp_path, monkeypatch):
    "Ctrl-C after the first chunk: no cache folder, no temp folder, and the next run builds a good cache."
    orig = C._encode_chunk
    calls = []
    def flaky(state, a, b):
        calls.append(a)
        if len(calls) == 2: raise KeyboardInterrupt
        return orig(state, a, b)
    monkeypatch.setattr(C, '_encode_chunk', flaky)
    with pytest.raises(KeyboardInterrupt):
        C.tokenize_corpus(_texts(40), cache_dir=tmp_path, progress=False, n_workers=0)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    c = tokenize_corpus(_texts(40), cache_dir=tmp_path, progress=False, n_workers=0)
    assert c.docs() == tokenize_texts(_texts(40), n_workers=0)


def test_leftover_temp_and_broken_cache(tmp_path):
    c = tokenize_corpus(_texts(), cache_dir=tmp_path, progress=False, n_workers=0)
    good = c.docs()
    (tmp_path/f'.tmp-tok-{c.key}-xyz').mkdir()                      # what a killed run leaves behind...
    os.utime(tmp_path/f'.tmp-tok-{c.key}-xyz', (1, 1))               # ...hours ago (a fresh one may be another process's)
    with open(c.cache_path/'ids.i32', 'r+b') as f: f.truncate(8)     # a damaged cache
    c2 = tokenize_corpus(_texts(), cache_dir=tmp_path, progress=False, n_workers=0)
    assert c2.docs() == good
    assert [p.name for p in tmp_path.iterdir()] == [c.cache_path.name]
    (c.cache_path/'meta.json').unlink()                              # no meta: never loaded
    assert C._load_corpus(c.cache_path, c.key) is None
    with pytest.raises(ValueError, match='not a complete token cache'): C.load_corpus(c.cache_path)


# ---------------------------------------------------------------- bad input

def test_bad_documents():
    with pytest.raises(TypeError, match='document 2 is a int'): tokenize_texts(['a', 'b', 3], n_workers=0)
    with pytest.raises(TypeError, match='document 1 is a NoneType'): tokenize_corpus(['a', None], cache_dir=False)
    with pytest.raises(TypeError, match='mix'): tokenize_corpus(['a', Path('b.txt')], cache_dir=False)
    with pytest.raises(TypeError, match='bytes'): tokenize1(b'abc')
    assert tokenize_texts(['', '   '], n_workers=0) == [['xxbos'], ['xxbos']]
    assert tokenize_corpus([], cache_dir=False, progress=False).docs() == []


def test_bad_files(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere'): tokenize_folder(tmp_path/'nowhere')
    with pytest.raises(FileNotFoundError, match='gone.txt'): tokenize_corpus([tmp_path/'gone.txt'], cache_dir=False)
    d = tmp_path/'d'; d.mkdir(); (d/'ok.txt').write_text('fine'); (d/'bad.txt').write_bytes('caf\xe9'.encode('latin-1'))
    for n in (0, 2):
        with pytest.raises(ValueError, match='bad.txt'): tokenize_folder(d, cache_dir=tmp_path/'c', n_workers=n, progress=False)
    assert not list((tmp_path/'c').glob('tok-*'))
    with pytest.raises(FileNotFoundError, match='nope.model'): SubwordTokenizer(sp_model=tmp_path/'nope.model')


# ---------------------------------------------------------------- issue 17: nothing lost, nothing silently wrong

def test_str_is_not_a_list_of_documents():
    "A `str` where a list of documents is expected is a TypeError, not one document per character."
    for f in (lambda: tokenize_texts('a review', n_workers=0), lambda: tokenize_corpus('a review', cache_dir=False),
              lambda: tokenize_corpus(b'a review', cache_dir=False)):
        with pytest.raises(TypeError, match='list of documents'): f()


def test_cache_key_sees_closures_globals_and_partials(tmp_path):
    "Rules that differ only in a captured value, a default, a referenced global or a partial's argument get other caches."
    import functools
    mk = lambda w: (lambda t: t.replace('movie', w))
    texts = ['a movie', 'the movie was good']
    a = tokenize_corpus(texts, rules=[mk('MOVIE')], cache_dir=tmp_path, progress=False, n_workers=0)
    b = tokenize_corpus(texts, rules=[mk('cinema')], cache_dir=tmp_path, progress=False, n_workers=0)
    assert a.doc(0) == ['a', 'MOVIE'] and b.doc(0) == ['a', 'cinema']
    g = {'WORD': 'film'}
    exec("def glob_rule(t): return t.replace('movie', WORD)", g)
    k1 = C.corpus_key(texts, WordTokenizer(), [g['glob_rule']], [])[0]
    g['WORD'] = 'show'
    assert C.corpus_key(texts, WordTokenizer(), [g['glob_rule']], [])[0] != k1
    def dflt(t, w='x'): return t + w
    def dflt2(t, w='y'): return t + w
    dflt2.__name__ = dflt2.__qualname__ = dflt.__qualname__
    assert C.corpus_key(texts, WordTokenizer(), [dflt], [])[0] != C.corpus_key(texts, WordTokenizer(), [dflt2], [])[0]
    rep = lambda t, w: t.replace('movie', w)
    kp = [C.corpus_key(texts, WordTokenizer(), [functools.partial(rep, w=w)], [])[0] for w in ('a', 'b')]
    assert kp[0] != kp[1]


def test_cache_refuses_unhashable_rule_state(tmp_path):
    "A rule whose captured state has no deterministic key is refused (with the way out), never cached under a wrong key."
    import threading
    lock = threading.Lock()
    def locked(t):
        with lock: return t
    with pytest.raises(TypeError, match='cache_dir=False'):
        tokenize_corpus(['a b'], rules=[locked], cache_dir=tmp_path, progress=False, n_workers=0)
    assert list(tmp_path.iterdir()) == []
    assert tokenize_corpus(['a b'], rules=[locked], cache_dir=False, progress=False, n_workers=0).doc(0) == ['a', 'b']


def _tamper_cases():
    def ids(d, v):
        a = np.fromfile(d/'ids.i32', dtype='<i4'); a[0] = v; a.tofile(d/'ids.i32')
    def offsets(d):
        o = np.load(d/'offsets.npy'); o[1], o[2] = o[2], o[1]; np.save(d/'offsets.npy', o)
    def counts(d):
        c = np.load(d/'counts.npy'); c[0] += 1; np.save(d/'counts.npy', c)
    def files_short(d): (d/'files.json').write_text(json.dumps(json.loads((d/'files.json').read_text())[:-1]))
    def meta_list(d): (d/'meta.json').write_text('[]')
    return [('ids.i32', lambda d: ids(d, -1)), ('ids.i32', lambda d: ids(d, 10**9)), ('offsets.npy', offsets),
            ('counts.npy', counts), ('files.json', files_short), ('files.json', lambda d: (d/'files.json').unlink()),
            ('meta.json', meta_list)]

import json

@pytest.mark.parametrize('i', range(7))
def test_edited_cache_is_rebuilt_or_refused(tmp_path, i):
    "An edited cache fails validation: tokenize_corpus rebuilds it, load_corpus names the file."
    name, tamper = _tamper_cases()[i]
    d = tmp_path/'data'; d.mkdir()
    for j in range(4): (d/f'{j}.txt').write_text(f'Review {j}: a {"very " * j}good movie')
    c = tokenize_folder(d, cache_dir=tmp_path/'c', progress=False, n_workers=0)
    good = c.docs(); del c.ids
    tamper(c.cache_path)
    with pytest.raises(ValueError, match=name): C.load_corpus(c.cache_path)
    c2 = tokenize_folder(d, cache_dir=tmp_path/'c', progress=False, n_workers=0)
    assert c2.docs() == good and c2.cache_path == c.cache_path
    assert C.load_corpus(c2.cache_path).docs() == good


def test_foreign_folder_with_the_cache_name_is_not_deleted(tmp_path):
    "A folder at the cache's place that the library did not write: FileExistsError naming it, nothing touched."
    c = tokenize_corpus(_texts(), cache_dir=tmp_path, progress=False, n_workers=0)
    for f in c.cache_path.iterdir(): f.unlink()
    (c.cache_path/'mine.txt').write_text('precious')
    with pytest.raises(FileExistsError, match=c.cache_path.name):
        tokenize_corpus(_texts(), cache_dir=tmp_path, progress=False, n_workers=0)
    assert [p.name for p in c.cache_path.iterdir()] == ['mine.txt']
    assert sorted(p.name for p in tmp_path.iterdir()) == [c.cache_path.name]


def test_cache_has_plain_modes(tmp_path):
    "The cache folder and its files get the modes a plain mkdir/open would give (not mkdtemp's 0700)."
    old = os.umask(0o022)
    try: c = tokenize_folder(_folder(tmp_path), cache_dir=tmp_path/'c', progress=False, n_workers=0)
    finally: os.umask(old)
    assert c.cache_path.stat().st_mode & 0o777 == 0o755
    assert {f.name: f.stat().st_mode & 0o777 for f in c.cache_path.iterdir()} == {f.name: 0o644 for f in c.cache_path.iterdir()}


def _folder(tmp_path):
    d = tmp_path/'data'; d.mkdir(exist_ok=True)
    for j in range(3): (d/f'{j}.txt').write_text(f'Review {j}.')
    return d


_RACE = """
import sys, time, pathlib
import ulmfit_lib.corpus as C
texts = [f'Review number {i}. It was GREAT!!! really really really good' for i in range(3000)]
print('ready', flush=True)
go = pathlib.Path(sys.argv[2])
while not go.exists(): time.sleep(0.005)
c = C.tokenize_corpus(texts, cache_dir=sys.argv[1], progress=False, n_workers=0)
assert len(c) == 3000 and c.doc(5)[:4] == ['xxbos', 'xxmaj', 'review', 'number'], c.doc(5)
"""

def test_two_processes_same_cache(tmp_path):
    "Two processes tokenizing the same corpus into the same cache folder at the same moment both succeed."
    import subprocess, sys
    env = dict(os.environ, PYTHONPATH=str(Path(C.__file__).parents[1]))
    for trial in range(2):
        cache, go = tmp_path/f'c{trial}', tmp_path/f'go{trial}'
        ps = [subprocess.Popen([sys.executable, '-c', _RACE, str(cache), str(go)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env) for _ in range(2)]
        for p in ps: assert p.stdout.readline().strip() == 'ready'
        go.touch()
        outs = [p.communicate(timeout=120) for p in ps]
        assert [p.returncode for p in ps] == [0, 0], [o[1][-2000:] for o in outs]
        (d,) = [p for p in cache.iterdir() if not p.name.startswith('.')]
        assert len(C.load_corpus(d)) == 3000


def test_lone_surrogates_and_bad_file_names(tmp_path):
    "Text that cannot be UTF-8 encoded, or a file name that is not UTF-8: an error naming the document or the file."
    for f in (lambda: tokenize_texts(['ok', 'bad \udc80 text'], n_workers=0),
              lambda: tokenize_corpus(['ok', 'bad \udc80 text'], cache_dir=tmp_path/'c', progress=False, n_workers=0),
              lambda: tokenize_corpus(['ok', 'bad \udc80 text'], cache_dir=False, progress=False, n_workers=0)):
        with pytest.raises(ValueError, match='document 1') as e: f()
        assert not isinstance(e.value, UnicodeError)
    d = tmp_path/'names'; d.mkdir(); (d/'ok.txt').write_text('fine')
    try: open(os.path.join(os.fsencode(d), b'caf\xe9.txt'), 'wb').close()
    except OSError: pytest.skip('this file system refuses non-UTF-8 names')
    for cache_dir in (tmp_path/'c2', False):
        with pytest.raises(ValueError, match='caf') as e: tokenize_folder(d, cache_dir=cache_dir, progress=False, n_workers=0)
        assert not isinstance(e.value, UnicodeError)


def _tiny_folder(tmp_path):
    d = tmp_path/'tiny'
    for lbl, texts in (('pos', ['A GREAT movie!!!', 'Loved it. <br />Really loved it.']), ('neg', ['so so so bad', 'Meh.'])):
        (d/lbl).mkdir(parents=True)
        for i, t in enumerate(texts): (d/lbl/f'{i}.txt').write_text(t)
    return d


def test_tokenizer_from_folder_pipelines(tmp_path):
    "`Datasets(items, [Tokenizer.from_folder(path)])` gives fastai's tokens (and passes other items through)."
    from fastai.data.core import Datasets, TfmdLists
    from fastai.data.transforms import get_text_files
    from ulmfit_lib.numericalize import Numericalize
    d = _tiny_folder(tmp_path)
    items = get_text_files(d)
    ours = Datasets(items, [Tokenizer.from_folder(d, cache_dir=tmp_path/'c', n_workers=0)])
    theirs = Datasets(items, [fc.Tokenizer.from_folder(d, n_workers=0)])
    assert [list(ours[i][0]) for i in range(len(items))] == [list(theirs[i][0]) for i in range(len(items))]
    tkn = Tokenizer.from_folder(d, cache_dir=tmp_path/'c', n_workers=0)
    assert tkn(3) == 3 and tkn(['already', 'tokens']) == ['already', 'tokens']
    assert tkn('Hello THERE') == list(fc.Tokenizer(fc.SpacyTokenizer())('Hello THERE'))
    tl = TfmdLists(items, [Tokenizer.from_folder(d, cache_dir=tmp_path/'c', n_workers=0), Numericalize(min_freq=1)])
    ftl = TfmdLists(items, [fc.Tokenizer.from_folder(d, n_workers=0), Numericalize(min_freq=1)])
    assert tl.vocab == ftl.vocab and [tl[i].tolist() for i in range(4)] == [ftl[i].tolist() for i in range(4)]


def test_tokenizer_from_df_pipelines(tmp_path):
    "`Datasets(df, [Tokenizer.from_df('text')])` and `TfmdLists(df, [attrgetter('text'), Tokenizer.from_df('text'), Numericalize()])` as fastai."
    from operator import attrgetter
    from fastai.data.core import Datasets, TfmdLists
    from ulmfit_lib.numericalize import Numericalize
    df = pd.DataFrame({'text': ['A GREAT movie!!!', 'so so so bad', 'Meh. meh.', 'Loved it. <br />Really.'], 'label': [1, 0, 0, 1]})
    ours = Datasets(df, [Tokenizer.from_df('text', cache_dir=tmp_path/'c', n_workers=0)])
    theirs = Datasets(df, [fc.Tokenizer.from_df('text', n_workers=0)])
    assert list(ours.items.columns) == list(theirs.items.columns)
    for i in range(len(df)):
        a, b = ours[i][0], theirs[i][0]
        assert list(a['text']) == list(b['text']) and a['label'] == b['label'] and a['text_length'] == b['text_length']
    tl = TfmdLists(df, [attrgetter('text'), Tokenizer.from_df('text', cache_dir=tmp_path/'c', n_workers=0), Numericalize(min_freq=1)])
    ftl = TfmdLists(df, [attrgetter('text'), fc.Tokenizer.from_df('text', n_workers=0), Numericalize(min_freq=1)])
    assert tl.vocab == ftl.vocab and [tl[i].tolist() for i in range(4)] == [ftl[i].tolist() for i in range(4)]


# ---------------------------------------------------------------- issue 23: one home per name, no import cycle

def test_one_home_per_name_and_no_cycle():
    "tokenize loads only the ground floor and no longer answers for corpus names; numericalize needs no corpus."
    import subprocess, sys
    code = ("import sys, ulmfit_lib.{m} as M; print(sorted(m for m in sys.modules if m.startswith('ulmfit_lib.')), "
            "hasattr(M, 'tokenize_corpus'), hasattr(M.Tokenizer if hasattr(M, 'Tokenizer') else M, 'from_folder'))")
    run = lambda m: subprocess.run([sys.executable, '-c', code.format(m=m)], capture_output=True, text=True, check=True).stdout.strip()
    assert run('tokenize') == "['ulmfit_lib.basics', 'ulmfit_lib.tokenize'] False False"
    assert run('numericalize') == "['ulmfit_lib.basics', 'ulmfit_lib.numericalize', 'ulmfit_lib.tokenize'] False False"
    import ulmfit_lib.all as A, ulmfit_lib.tokenize as T
    assert A.tokenize_corpus is C.tokenize_corpus and A.TokCorpus is C.TokCorpus and T.Tokenizer is A.Tokenizer
    assert isinstance(Tokenizer.from_folder(_tiny_folder(Path(__import__('tempfile').mkdtemp())), cache_dir=False, n_workers=0),
                      C.CorpusTokenizer)
    assert pickle.loads(pickle.dumps(C.TokenizedDf(pd.DataFrame(), Counter(), None)))[1] == Counter()
    with pytest.raises(AttributeError, match='tokenize_corpus'): T.tokenize_corpus

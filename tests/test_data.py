"Bad input, atomicity and sampling properties of `ulmfit_lib.data` (the notebook covers the happy path)."
import io, os, tarfile
from pathlib import Path
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
from ulmfit_lib.data import get_imdb, check_imdb, imdb_sample, IMDB_COUNTS, IMDB_ENV
from ulmfit_lib.basics import read_text
import ulmfit_lib.data as data_mod


def _tgz(path, files):
    "Write a .tgz at `path` holding `files` ({name: text})."
    with tarfile.open(path, 'w:gz') as tf:
        for name, text in files.items():
            b = text.encode(); ti = tarfile.TarInfo(name); ti.size = len(b)
            tf.addfile(ti, io.BytesIO(b))
    return path


def test_missing_archive_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.tgz'): get_imdb(tmp_path/'missing.tgz', dest=tmp_path)


def test_missing_archive_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv(IMDB_ENV, str(tmp_path/'env.tgz'))
    with pytest.raises(FileNotFoundError, match='env.tgz'): get_imdb(dest=tmp_path)


def test_garbage_archive_is_value_error(tmp_path):
    (tmp_path/'junk.tgz').write_bytes(os.urandom(2000))
    with pytest.raises(ValueError, match='junk.tgz'): get_imdb(tmp_path/'junk.tgz', dest=tmp_path/'out')
    assert not (tmp_path/'out'/'imdb').exists() and list((tmp_path/'out').iterdir()) == []


def test_wrong_dataset_is_value_error(tmp_path):
    arc = _tgz(tmp_path/'other.tgz', {'imdb/train/pos/1_9.txt': 'great', 'imdb/README': 'x'})
    with pytest.raises(ValueError, match='other.tgz.*train/neg: 0 reviews, expected 12500'):
        get_imdb(arc, dest=tmp_path/'out')
    assert list((tmp_path/'out').iterdir()) == []
    arc2 = _tgz(tmp_path/'noimdb.tgz', {'data/a.txt': 'x'})
    with pytest.raises(ValueError, match='no top-level imdb'): get_imdb(arc2, dest=tmp_path/'out')


def test_truncated_real_archive(tmp_path, imdb_path):
    "A download cut off half-way: ValueError, and nothing that looks like a dataset is left."
    src = Path(os.environ.get(IMDB_ENV) or Path(__file__).resolve().parents[2]/'shared'/'data'/'imdb.tgz')
    part = tmp_path/'imdb_part.tgz'
    with open(src, 'rb') as f: part.write_bytes(f.read(5_000_000))
    with pytest.raises(ValueError, match='imdb_part.tgz'): get_imdb(part, dest=tmp_path/'out')
    assert list((tmp_path/'out').iterdir()) == []


def test_interrupted_extraction_leaves_nothing(tmp_path, monkeypatch, imdb_path):
    "Ctrl-C in the middle of extraction: no imdb/ folder and no temporary folder are left."
    src = os.environ.get(IMDB_ENV) or str(Path(__file__).resolve().parents[2]/'shared'/'data'/'imdb.tgz')
    orig = tarfile.TarFile.extractall
    def boom(self, *a, **k): raise KeyboardInterrupt
    monkeypatch.setattr(tarfile.TarFile, 'extractall', boom)
    with pytest.raises(KeyboardInterrupt): get_imdb(src, dest=tmp_path)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(tarfile.TarFile, 'extractall', orig)


def test_incomplete_folder_is_replaced(tmp_path, monkeypatch):
    "A dest/imdb the library extracted that fails the layout check is not trusted: the archive is extracted again."
    from ulmfit_lib.basics import mark_ours
    arc = _tgz(tmp_path/'small.tgz', {'imdb/train/pos/1_9.txt': 'great', 'imdb/train/neg/2_1.txt': 'awful'})
    def complete(p):   # the layout check, for this two-review archive: both reviews present
        if not all((Path(p)/'train'/d).is_dir() and any((Path(p)/'train'/d).iterdir()) for d in ('pos', 'neg')):
            raise ValueError(f'{p} is not a complete IMDb folder')
        return Path(p)
    monkeypatch.setattr(data_mod, 'check_imdb', complete)
    out = tmp_path/'out'; (out/'imdb'/'train'/'pos').mkdir(parents=True)
    (out/'imdb'/'train'/'pos'/'0_1.txt').write_text('partial')
    mark_ours(out/'imdb', 'imdb')
    p = get_imdb(arc, dest=out)
    assert p == out/'imdb' and sorted(x.name for x in out.iterdir()) == ['imdb']
    assert (p/'train'/'neg'/'2_1.txt').read_text() == 'awful' and not (p/'train'/'pos'/'0_1.txt').exists()


def test_foreign_folder_is_not_replaced(tmp_path):
    "A dest/imdb the library did not write is never deleted: FileExistsError naming it, nothing touched."
    arc = _tgz(tmp_path/'small.tgz', {'imdb/train/pos/1_9.txt': 'great'})
    (tmp_path/'out'/'imdb').mkdir(parents=True); (tmp_path/'out'/'imdb'/'notes.txt').write_text('mine')
    monkey = data_mod.check_imdb
    try:
        data_mod.check_imdb = lambda p: p if Path(p).parent.name != 'out' else monkey(p)   # accept the tiny archive
        with pytest.raises(FileExistsError, match=str(tmp_path/'out'/'imdb')): get_imdb(arc, dest=tmp_path/'out')
    finally: data_mod.check_imdb = monkey
    assert [p.name for p in (tmp_path/'out').iterdir()] == ['imdb']
    assert [p.name for p in (tmp_path/'out'/'imdb').iterdir()] == ['notes.txt']


def test_sample_without_unsup_folder(tmp_path):
    "`imdb_sample(n_unsup=0)` needs no `unsup/` folder."
    for sub in ('train/pos', 'train/neg', 'test/pos', 'test/neg'):
        (tmp_path/sub).mkdir(parents=True)
        for i in range(2): (tmp_path/sub/f'{i}_1.txt').write_text('x')
    s = imdb_sample(tmp_path, n_train=2, n_valid=2, n_unsup=0)
    assert (len(s.train), len(s.valid), s.unsup) == (2, 2, [])
    with pytest.raises(FileNotFoundError, match='unsup'): imdb_sample(tmp_path, n_train=2, n_valid=2, n_unsup=1)


def test_requires_python_matches_tarfile_filter():
    "`tarfile`'s `filter='data'` needs Python 3.11.4: pyproject must say so."
    import tomllib
    meta = tomllib.loads((Path(__file__).resolve().parents[1]/'pyproject.toml').read_text())
    assert meta['project']['requires-python'] == '>=3.11.4'


def test_check_imdb_names_counts(tmp_path):
    with pytest.raises(ValueError, match=r'unsup: 0 reviews, expected 50000'): check_imdb(tmp_path)


def test_read_text_non_utf8(tmp_path):
    f = tmp_path/'latin1.txt'; f.write_bytes('caf\xe9'.encode('latin-1'))
    with pytest.raises(ValueError, match='latin1.txt'): read_text(f)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n_train=st.integers(0, 300).map(lambda x: 2*x), n_valid=st.integers(0, 300).map(lambda x: 2*x),
       n_unsup=st.integers(0, 500), seed=st.integers(0, 2**32))
def test_sample_properties(imdb_path, n_train, n_valid, n_unsup, seed):
    s = imdb_sample(imdb_path, n_train, n_valid, n_unsup, seed)
    assert (len(s.train), len(s.valid), len(s.unsup)) == (n_train, n_valid, n_unsup)
    assert s.labels('train').count('pos') == n_train//2 and s.labels('valid').count('pos') == n_valid//2
    assert len(set(s.train)) == n_train and len(set(s.valid)) == n_valid and len(set(s.unsup)) == n_unsup
    assert all(f.parent.parent.name == 'train' for f in s.train)
    assert all(f.parent.parent.name == 'test' for f in s.valid)
    assert all(f.parent.name == 'unsup' for f in s.unsup)
    assert imdb_sample(imdb_path, n_train, n_valid, n_unsup, seed).train == s.train


@pytest.mark.parametrize('kw,msg', [(dict(n_train=-2), 'n_train'), (dict(n_valid=3), 'n_valid=3'),
                                    (dict(n_train=30_000), '15000 neg'), (dict(n_unsup=2.5), 'n_unsup')])
def test_sample_bad_input(imdb_path, kw, msg):
    with pytest.raises(ValueError, match=msg): imdb_sample(imdb_path, **kw)

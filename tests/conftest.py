import os
from pathlib import Path
import pytest

ARCHIVE = Path(__file__).resolve().parents[1].parent/'shared'/'data'/'imdb.tgz'

@pytest.fixture(scope='session')
def imdb_path():
    "The extracted IMDb folder: $ULMFIT_IMDB_ARCHIVE, else ../shared/data/imdb.tgz, else skip."
    from ulmfit_lib.data import get_imdb
    archive = os.environ.get('ULMFIT_IMDB_ARCHIVE') or (ARCHIVE if ARCHIVE.exists() else None)
    if archive is None: pytest.skip('no local IMDb archive (set ULMFIT_IMDB_ARCHIVE)')
    return get_imdb(archive)

"""fastbook's IMDb code (chapter 1's classifier, chapter 10's tokenization, batching and ULMFiT) run as written after
`from ulmfit_lib.all import *`, on a small real IMDb folder that `untar_data(URLs.IMDB)` returns here (no internet:
WikiText-103 cannot be fetched, so the learners start from random weights and say so). Fewer epochs than the book and,
for the classifiers, `bs=16` (the folder has 60 training reviews); everything else is the book's text, checked with a few asserts between the lines."""
import math
import pytest


@pytest.fixture
def book(small_imdb, monkeypatch, tmp_path):
    "A namespace as after `from ulmfit_lib.all import *`, with `untar_data` serving the small IMDb folder."
    import fastai.data.external as ext
    ipath, _ = small_imdb
    def untar_data(url, *args, **kwargs):
        if url == ext.URLs.IMDB: return ipath
        raise ConnectionError(f'offline test: cannot download {url}')
    monkeypatch.setattr(ext, 'untar_data', untar_data)      # where the learners look for WikiText-103
    monkeypatch.setenv('ULMFIT_CACHE', str(tmp_path/'cache'))
    monkeypatch.chdir(tmp_path)                              # SubwordTokenizer writes its model under ./tmp, as fastai's
    ns = {}
    exec('from ulmfit_lib.all import *', ns)
    ns['untar_data'] = untar_data
    return ns


CHAPTER1 = '''
dls = TextDataLoaders.from_folder(untar_data(URLs.IMDB), valid='test', bs=16)
learn = text_classifier_learner(dls, AWD_LSTM, drop_mult=0.5, metrics=accuracy)
learn.fine_tune(1, 1e-2)
'''
CHAPTER1_PREDICT = '''
res = learn.predict("I really liked that movie!")
'''

def test_chapter1(book):
    with pytest.warns(UserWarning, match='WikiText-103'): exec(CHAPTER1, book)
    learn = book['learn']                  # fine_tune: a frozen epoch, then an unfrozen one (the recorder keeps the last fit)
    assert len(learn.dls.train) == 3 and len(learn.recorder.losses) == 3 and len(learn.recorder.values) == 1
    assert math.isfinite(learn.recorder.values[-1][0]) and all(p.requires_grad for p in learn.model.parameters())
    exec(CHAPTER1_PREDICT, book)
    label, idx, probs = book['res']
    assert label in ('neg', 'pos') and int(idx) == ['neg', 'pos'].index(label)
    assert probs.shape == (2,) and abs(float(probs.sum()) - 1) < 1e-5


CHAPTER10_TOKENS = '''
path = untar_data(URLs.IMDB)
files = get_text_files(path, folders = ['train', 'test', 'unsup'])
txt = files[0].open().read(); txt[:75]
spacy = WordTokenizer()
toks = first(spacy([txt]))
print(coll_repr(toks, 30))
dollar = first(spacy(['The U.S. dollar $1 is $1.00.']))
tkn = Tokenizer(spacy)
print(coll_repr(tkn(txt), 31))
copy = coll_repr(tkn('&copy;   Fast.ai www.fast.ai/INDEX'), 31)
txts = L(o.open().read() for o in files[:2000])
def subword(sz):
    sp = SubwordTokenizer(vocab_sz=sz)
    sp.setup(txts)
    return ' '.join(first(sp([txt]))[:40])
sub = subword(1000)
toks200 = txts[:200].map(tkn)
toks200[0]
num = Numericalize()
num.setup(toks200)
coll_repr(num.vocab,20)
nums = num(toks)[:20]; nums
back = ' '.join(num.vocab[o] for o in nums)
nums200 = toks200.map(num)
dl = LMDataLoader(nums200)
x,y = first(dl)
x.shape,y.shape
'''

def test_chapter10_tokenization_and_batching(book):
    exec(CHAPTER10_TOKENS, book)
    b = book
    assert len(b['files']) == 130 and b['toks'][0] != 'xxbos'
    assert list(b['dollar']) == ['The', 'U.S.', 'dollar', '$', '1', 'is', '$', '1.00', '.']
    assert b['copy'] == b['coll_repr'](['xxbos', '©', 'xxmaj', 'fast.ai', 'xxrep', '3', 'w', '.fast.ai', '/', 'xxup', 'index'], 31)
    assert len(b['sub'].split(' ')) == 40 and b['sub'].startswith('▁')
    assert b['num'].vocab[:2] == ['xxunk', 'xxpad'] and len(b['num'].vocab) % 8 == 0
    assert all(w in (t, 'xxunk') for w, t in zip(b['back'].split(' '), b['toks'][:20]))
    assert b['x'].shape == b['y'].shape == (64, 72) and (b['x'][:, 1:] == b['y'][:, :-1]).all()


CHAPTER10_ULMFIT = '''
path = untar_data(URLs.IMDB)
get_imdb = partial(get_text_files, folders=['train', 'test', 'unsup'])
dls_lm = DataBlock(
    blocks=TextBlock.from_folder(path, is_lm=True),
    get_items=get_imdb, splitter=RandomSplitter(0.1)
).dataloaders(path, path=path, bs=128, seq_len=80)
dls_lm.show_batch(max_n=2)
learn = language_model_learner(
    dls_lm, AWD_LSTM, drop_mult=0.3,
    metrics=[accuracy, Perplexity()])
learn.fit_one_cycle(1, 2e-2)
learn.save('1epoch')
learn = learn.load('1epoch')
learn.unfreeze()
learn.fit_one_cycle(1, 2e-3)
learn.save_encoder('finetuned')
TEXT = "I liked this movie because"
N_WORDS = 40
N_SENTENCES = 2
preds = [learn.predict(TEXT, N_WORDS, temperature=0.75)
         for _ in range(N_SENTENCES)]
dls_clas = DataBlock(
    blocks=(TextBlock.from_folder(path, vocab=dls_lm.vocab),CategoryBlock),
    get_y = parent_label,
    get_items=partial(get_text_files, folders=['train', 'test']),
    splitter=GrandparentSplitter(valid_name='test')
).dataloaders(path, path=path, bs=16, seq_len=72)
dls_clas.show_batch(max_n=3)
learn = text_classifier_learner(dls_clas, AWD_LSTM, drop_mult=0.5,
                                metrics=accuracy)
learn = learn.load_encoder('finetuned')
learn.fit_one_cycle(1, 2e-2)
learn.freeze_to(-2)
learn.fit_one_cycle(1, slice(1e-2/(2.6**4),1e-2))
learn.freeze_to(-3)
learn.fit_one_cycle(1, slice(5e-3/(2.6**4),5e-3))
learn.unfreeze()
learn.fit_one_cycle(1, slice(1e-3/(2.6**4),1e-3))
'''

def test_chapter10_ulmfit(book):
    "The book's three stages minus `.to_fp16()` (it needs CUDA), one epoch each. The prompt comes back lower-cased, as in the book."
    with pytest.warns(UserWarning, match='WikiText-103'): exec(CHAPTER10_ULMFIT, book)
    b = book
    assert b['dls_clas'].vocab[0] == b['dls_lm'].vocab and list(b['dls_clas'].vocab[1]) == ['neg', 'pos']
    assert all(p.startswith(b['TEXT'].lower()) and len(p.split()) > len(b['TEXT'].split()) + 10 for p in b['preds'])
    learn = b['learn']
    assert (learn.path/learn.model_dir/'finetuned.pth').exists() and (learn.path/learn.model_dir/'1epoch.pth').exists()
    assert len(learn.dls.train) == 3 and len(learn.recorder.losses) == 3 and 0 <= learn.recorder.values[-1][-1] <= 1
    assert all(p.requires_grad for p in learn.model.parameters())

"The tokenizers and rules (ulmfit_lib.tokenize): parity with fastai 2.8 (sample of IMDb + adversarial strings + random text), properties, pickling."
import pickle
import pytest
from hypothesis import given, settings, strategies as st, HealthCheck
import fastai.text.core as fc
from ulmfit_lib.tokenize import (WordTokenizer, SubwordTokenizer, CharTokenizer, Tokenizer, tokenize1, text_proc_rules,
                                 text_postproc_rules, text_spec_tok, compose_rules)
from ulmfit_lib.corpus import tokenize_texts, tokenize_corpus

ADVERSARIAL = [
    '', ' ', '\t', '\n', '\r\n', '   \n\t  ', 'a', 'A', 'I', 'xxbos', 'xxmaj xxup xxrep', 'xxbosxx xxunk.',
    'Hello World!', 'THIS IS ALL CAPS!!! REALLY?', 'McDonald iPhone eBay NASA-led U.S.A. A.B.C',
    'so so so so so good', 'very very very', 'no no', 'the the the the.', 'hahahahaha', 'Nooooooo!!!!!!!?????',
    'aaa bbb ccc', '&amp; &lt;b&gt; &quot;hi&quot; &#39;yo&#39; &nbsp; &eacute; &#x27; &#146; #36;5 amp; quot;',
    '<br /><br />New para<br/>x<br />  <br />y', 'line\\nbreak and a \\"quote\\"', '<unk> word @.@ 5 @-@ 6',
    'wait... what....', 'emoji 😀😀😀 👍🏽 👨‍👩‍👧 🇫🇷 ok', 'CJK 日本語のテキスト 中文 한국어 text', 'Ünïcödé ÀÉÎ ß straße',
    'e\u0301 combining \u0301 accents', 'url http://www.example.com/path?q=1&r=2#frag and www.IMDB.com',
    'mail me@example.com, #hashtag a/b c\\d', 'tabs\tand\ttabs\t\tdouble', 'crlf\r\nline\r\n\r\nend',
    'zero\u200bwidth\u200dj\ufeffbom', 'nbsp\xa0here\u2003em\u3000ideo', 'x' * 2000, 'ab ' * 1000,
    'Wow' + '!' * 300, 'A' * 50 + ' B ' + 'c' * 50, "don't won't can't I'm you're y'all O'Neil",
    '$5.00 10% 3.14 1,000,000 -5 +7 1e10 (a) [b] {c} "d" \'e\'', '—dash–en… “curly” ‘single’ «guill»',
    'Mr. Smith vs. Dr. Who etc. e.g. i.e.', '\x00\x01\x1f ctrl \x7f', '▁ already ▁▁ spaces ▁',
    ' leading and trailing ', 'UPPER lower Mixed UPPER', 'I I I I', 'ok OK Ok oK',
]


@pytest.fixture(scope='module')
def ours(): return WordTokenizer()

@pytest.fixture(scope='module')
def theirs(): return fc.SpacyTokenizer()

def _L(x): return [list(o) for o in x]


# ---------------------------------------------------------------- parity with fastai

def test_spec_tok_and_rules_are_fastais():
    assert text_spec_tok == fc.defaults.text_spec_tok
    assert [r.__name__ for r in text_proc_rules] == [r.__name__ for r in fc.defaults.text_proc_rules]
    assert [r.__name__ for r in text_postproc_rules] == ['replace_space']


def test_imdb_batched_path_parity(imdb_texts, theirs):
    "tokenize_texts == fastai's tokenize_texts on 400 IMDb reviews, with 2 workers and with none."
    expected = _L(fc.tokenize_texts(imdb_texts, n_workers=0, tok=theirs))
    assert tokenize_texts(imdb_texts, n_workers=2) == expected
    assert tokenize_texts(imdb_texts[:60], n_workers=0) == expected[:60]


def test_imdb_per_item_path_parity(imdb_texts, ours, theirs):
    "Tokenizer(tok)(txt) == fastai's Tokenizer(tok)(txt) (no post rules), and the two paths really differ."
    tkn, ftkn = Tokenizer(ours), fc.Tokenizer(theirs)
    per_item = [tkn(t) for t in imdb_texts]
    assert per_item == [list(ftkn(t)) for t in imdb_texts]
    batched = tokenize_texts(imdb_texts, n_workers=0)
    differ = [i for i,(a,b) in enumerate(zip(per_item, batched)) if a != b]
    assert differ, 'expected some reviews where the post rule changes tokens'
    for i in differ: assert [fc.replace_space(t) for t in per_item[i]] == batched[i]


def test_adversarial_parity(ours, theirs):
    expected = _L(fc.tokenize_texts(ADVERSARIAL, n_workers=0, tok=theirs))
    assert tokenize_texts(ADVERSARIAL, n_workers=2) == expected
    assert [tokenize1(t) for t in ADVERSARIAL] == expected
    ftkn = fc.Tokenizer(theirs)
    assert [Tokenizer(ours)(t) for t in ADVERSARIAL] == [list(ftkn(t)) for t in ADVERSARIAL]


def test_long_document_parity(imdb_texts, ours, theirs):
    "A 50k-character document (reviews glued together)."
    doc = ' '.join(imdb_texts)[:50_000]
    assert tokenize1(doc, tok=ours) == list(fc.tokenize1(doc, theirs))


_alphabet = st.sampled_from(list('aAbBzZ  \n\t.,!?\'"/#\\-:;()<>&') + ['<br />', '&amp;', 'xxbos', 'xxmaj', ' I ',
                                                                       'NYC', 'Ok', 'ok ok ok ', '!!!', '😀', 'é', '\xa0'])

@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_alphabet, max_size=40))
def test_random_text_parity(ours, theirs, parts):
    t = ''.join(parts)
    for r, fr in zip(text_proc_rules + text_postproc_rules, fc.defaults.text_proc_rules + fc.defaults.text_postproc_rules):
        assert r(t) == fr(t), r.__name__
    assert tokenize1(t, tok=ours) == list(fc.tokenize1(t, theirs))


_glue = st.sampled_from(text_spec_tok + list(' .,!?\'"()[]-/:;$%<>\n') + ['...', "'s", "n't", 'a', 'US', '5', 'http://x.co', ':)'])

@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_glue, max_size=25))
def test_fast_path_equals_special_cases(ours, parts):
    "The cache-friendly tokenizer without special cases gives the tokens of spaCy with them, specials glued to anything."
    t = ''.join(parts)
    assert next(ours([t])) == [x.text for x in ours.nlp.tokenizer(t)]


def test_fast_path_imdb(imdb_texts, ours):
    pre = compose_rules(text_proc_rules)
    texts = [pre(t) for t in imdb_texts]
    slow = WordTokenizer(fast=False)
    assert slow._tok is slow.nlp.tokenizer and ours._tok is not ours.nlp.tokenizer
    assert list(ours(texts)) == list(slow(texts))


def test_subword_parity(imdb_texts, tmp_path):
    "Same vocabulary-size rule, same pieces with the same scores, same tokens as fastai's SentencePieceTokenizer."
    texts = imdb_texts[:150]
    ours, theirs = SubwordTokenizer(cache_dir=tmp_path/'o'), fc.SentencePieceTokenizer(cache_dir=tmp_path/'t')
    raw = tmp_path/'raw.txt'; raw.write_text('\n'.join(texts))
    assert ours._get_vocab_sz(raw) == theirs._get_vocab_sz(raw)
    a = tokenize_texts(texts, tok=ours, n_workers=2)
    b = _L(fc.tokenize_texts(texts, tok=theirs, n_workers=0))
    assert a == b
    pieces = lambda sp: [(sp.IdToPiece(i), sp.GetScore(i)) for i in range(sp.GetPieceSize())]
    assert pieces(ours.tok) == pieces(theirs.tok)
    assert sorted(p.name for p in (tmp_path/'o').iterdir()) == ['spm.model', 'spm.vocab']
    c = tokenize_corpus(texts[:20], tok=ours, cache_dir=tmp_path/'c', progress=False)
    assert c.docs() == a[:20]


# ---------------------------------------------------------------- properties

@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_char_tokenizer_roundtrip(t):
    toks = next(CharTokenizer()([t]))
    assert ''.join(toks) == t
    assert all(len(x) > 0 for x in toks)


def test_char_tokenizer_clusters():
    ct = CharTokenizer()
    assert next(ct(['xxmaj 👨‍👩‍👧 e\u0301!'])) == ['xxmaj', ' ', '👨‍👩‍👧', ' ', 'e\u0301', '!']
    assert next(ct(['axxbos xxbos'])) == list('axxbos') + [' ', 'xxbos']


def test_word_tokenizer_pickles():
    w = pickle.loads(pickle.dumps(WordTokenizer(special_toks=['xxfoo'])))
    assert w.special_toks == ['xxfoo'] and next(w(['xxfoo bar'])) == ['xxfoo', 'bar']


def test_tokenizer_pickles():
    "learn.export pickles the DataLoaders, tokenizer transform included."
    t = pickle.loads(pickle.dumps(Tokenizer(WordTokenizer())))
    assert t('Hello THERE') == ['xxbos', 'xxmaj', 'hello', 'xxup', 'there']


def test_tokenizer_transform_decode_and_path(tmp_path):
    tkn = Tokenizer(WordTokenizer)
    (tmp_path/'a.txt').write_text('Hi THERE')
    assert tkn(tmp_path/'a.txt') == ['xxbos', 'xxmaj', 'hi', 'xxup', 'there']
    assert tkn.decode(['xxbos', 'hi']) == 'xxbos hi'
    assert Tokenizer(WordTokenizer(), rules=[])('Hi THERE') == ['Hi', 'THERE']


def test_defaults_read_only_view():
    "`defaults.text_proc_rules` (the chapter prints it) shows the default rules as fastai's lists and cannot be changed."
    import ulmfit_lib.all as A
    from fastcore.basics import defaults as fdefaults
    assert A.defaults.text_proc_rules == text_proc_rules and type(A.defaults.text_proc_rules) is list
    assert A.defaults.text_postproc_rules == text_postproc_rules and A.defaults.text_spec_tok == text_spec_tok
    assert A.defaults.text_spec_tok + ['xxnew'] == fdefaults.text_spec_tok + ['xxnew']   # fastai's text tests do this
    A.defaults.text_proc_rules.append(str.upper); A.defaults.text_spec_tok.clear()     # a caller's copy, not ours
    assert A.defaults.text_proc_rules == text_proc_rules and A.defaults.text_spec_tok == text_spec_tok
    with pytest.raises(AttributeError): A.defaults.text_proc_rules = []
    assert A.defaults.cpus == fdefaults.cpus               # fastai's other defaults still read through
    with pytest.raises(AttributeError): A.defaults.cpus = 1



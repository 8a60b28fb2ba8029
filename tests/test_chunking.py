from hypothesis import given, settings, strategies as st

from tasks.script.chunking import chunk_text, normalise_text, split_sentences


def test_sentences_keep_abbreviations_initials_and_decimals_together():
    text = 'Dr. Smith went home. He said "Hi!" Then J. K. Rowling wrote. Was it 3.5 hours? Yes… maybe.'
    assert split_sentences(text) == [
        "Dr. Smith went home.", 'He said "Hi!"', "Then J. K. Rowling wrote.", "Was it 3.5 hours?", "Yes… maybe."]


def test_chunks_pack_whole_sentences_up_to_the_budget():
    text = "One two three. Four five six seven. Eight nine."
    assert chunk_text(text, 7) == ["One two three. Four five six seven.", "Eight nine."]
    assert chunk_text(text, 3) == ["One two three.", "Four five six", "seven.", "Eight nine."]


def test_paragraph_breaks_end_a_chunk():
    assert chunk_text("First para.\n\nSecond para.", 100) == ["First para.", "Second para."]


def test_long_sentence_splits_at_clauses_before_words():
    sentence = "alpha beta gamma, delta epsilon zeta; eta theta iota kappa."
    assert chunk_text(sentence, 4) == ["alpha beta gamma,", "delta epsilon zeta;", "eta theta iota kappa."]


def test_ten_thousand_word_paragraph_is_chunked_within_budget():
    text = " ".join(f"word{i}" + ("." if i % 17 == 16 else "") for i in range(10_000))
    chunks = chunk_text(text, 60)
    assert all(len(c.split()) <= 60 for c in chunks)
    assert " ".join(chunks).split() == text.split()


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(categories=["L", "N", "P", "Zs"]), min_size=0, max_size=40),
                min_size=1, max_size=12), st.integers(min_value=1, max_value=30))
def test_chunking_loses_and_reorders_no_word(parts, budget):
    text = "\n\n".join(parts)
    chunks = chunk_text(text, budget)
    assert all(c == normalise_text(c) and c for c in chunks)
    assert " ".join(chunks).split() == normalise_text(text.replace("\n", " ")).split()

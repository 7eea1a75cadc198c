"""Language-model text: sentences from Kaldi `text` files, plain text (PTB) or the synthesised corpus' planner,
tokenised into words (or sentencepiece pieces) and cut into fixed-length training rows.

A sentence ends with </s>; words outside the training vocabulary become <unk>. The token stream of a set (every
sentence followed by </s>) is cut into rows of `length` inputs, each with the next token as its target (PTB-style
truncated rows; every row starts from a zero LSTM state); the last row is padded with target -100.
"""
import io
from collections import Counter
from pathlib import Path

import torch

from esgd_asr.errors import EsgdError

EOS, UNK = "</s>", "<unk>"
PTB_FILES = {"train": "ptb.train.txt", "valid": "ptb.valid.txt", "test": "ptb.test.txt"}


def read_sentences(path: str | Path, utterance_ids: bool) -> list[list[str]]:
    """Whitespace-split sentences, one a line (blank lines skipped); with `utterance_ids` (a Kaldi `text` file)
    the first field of each line is dropped."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise EsgdError(f"{path}: no such file") from None
    except UnicodeDecodeError as err:
        raise EsgdError(f"{path}: not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise EsgdError(f"{path}: unreadable ({err.strerror})") from None
    sentences = [line.split()[1:] if utterance_ids else line.split() for line in lines if line.strip()]
    sentences = [s for s in sentences if s]
    if not sentences:
        raise EsgdError(f"{path}: no sentences")
    return sentences


def read_ptb(directory: str | Path) -> dict[str, list[list[str]]]:
    """ptb.train.txt / ptb.valid.txt / ptb.test.txt of the standard (Mikolov) PTB distribution."""
    directory = Path(directory)
    if not directory.is_dir():
        raise EsgdError(f"{directory}: no such directory")
    return {split: read_sentences(directory / name, utterance_ids=False) for split, name in PTB_FILES.items()}


def corpus_text(data_root: str | Path) -> dict[str, list[list[str]]]:
    """The default corpus' text: data/{train,dev,test}/text when present, else the same sentences planned again
    by the corpus' synthesiser planner (esgd_asr.data.synth, its default settings = conf/synth.conf; needs
    Debian's fortunes)."""
    root = Path(data_root)
    files = {"train": root / "train" / "text", "valid": root / "dev" / "text", "test": root / "test" / "text"}
    if all(path.is_file() for path in files.values()):
        return {split: read_sentences(path, utterance_ids=True) for split, path in files.items()}
    from esgd_asr.data.synth.corpus import SynthConfig, plan_corpus
    from esgd_asr.data.synth.text import fortune_sentences

    plan = plan_corpus(SynthConfig(), fortune_sentences(), root / "wav")
    return {split: [spec.text.split() for spec, _ in plan[name]]
            for split, name in (("train", "train"), ("valid", "dev"), ("test", "test"))}


class WordVocabulary:
    """The `size` most frequent training words (ties by first occurrence) plus </s> and <unk>."""

    def __init__(self, train: list[list[str]], size: int | None = None):
        counts = Counter(w for sentence in train for w in sentence if w not in (EOS, UNK))
        words = [w for w, _ in counts.most_common(None if size is None else max(0, size - 2))]
        self.tokens = [EOS, UNK, *words]
        self.index = {token: i for i, token in enumerate(self.tokens)}

    def encode(self, sentence: list[str]) -> list[int]:
        unk = self.index[UNK]
        return [self.index.get(w, unk) for w in sentence] + [self.index[EOS]]


class PieceVocabulary:
    """A sentencepiece (unigram) model of `size` pieces trained on the training sentences; </s> is its EOS id."""

    def __init__(self, train: list[list[str]], size: int, seed: int = 0):
        import sentencepiece as spm

        model = io.BytesIO()
        spm.set_random_generator_seed(seed)
        try:
            spm.SentencePieceTrainer.train(sentence_iterator=iter(" ".join(s) for s in train), model_writer=model,
                                           vocab_size=size, model_type="unigram", num_threads=1, bos_id=-1,
                                           eos_id=0, unk_id=1, pad_id=-1, eos_piece=EOS, unk_piece=UNK,
                                           hard_vocab_limit=False, minloglevel=2)
        except RuntimeError as err:
            raise EsgdError(f"sentencepiece: {str(err).splitlines()[0]}") from None
        self.processor = spm.SentencePieceProcessor(model_proto=model.getvalue())
        self.tokens = [self.processor.id_to_piece(i) for i in range(self.processor.get_piece_size())]

    def encode(self, sentence: list[str]) -> list[int]:
        return self.processor.encode(" ".join(sentence)) + [0]


def make_vocabulary(tokenizer: str, train: list[list[str]], size: int | None, seed: int = 0):
    if tokenizer == "word":
        return WordVocabulary(train, size)
    if tokenizer == "sentencepiece":
        if not size:
            raise EsgdError("--tokenizer sentencepiece needs --vocab-size")
        return PieceVocabulary(train, size, seed)
    raise EsgdError(f"--tokenizer: unknown tokenizer {tokenizer!r} (word or sentencepiece)")


def to_rows(stream: list[int], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs (rows, length) float32 token ids and targets (rows, length), the next token (-100 past the end)."""
    if length < 1:
        raise EsgdError("--bptt must be at least 1")
    ids = torch.tensor(stream, dtype=torch.long)
    rows = max(1, -(-(len(ids) - 1) // length))
    inputs = torch.zeros(rows * length, dtype=torch.long)
    targets = torch.full((rows * length,), -100, dtype=torch.long)
    inputs[:len(ids) - 1] = ids[:-1]
    targets[:len(ids) - 1] = ids[1:]
    return inputs.view(rows, length).float(), targets.view(rows, length)


def encode_sets(sentences: dict[str, list[list[str]]], vocabulary, length: int) -> dict:
    """{split: (inputs, targets)}; each stream starts with </s> as the context of the first word."""
    eos = vocabulary.encode([])[-1]
    return {split: to_rows([eos] + [i for s in items for i in vocabulary.encode(s)], length)
            for split, items in sentences.items()}

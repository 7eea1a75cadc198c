"""Prepare a language-model task (token rows of train / valid / test) for esgd-train-task.

Usage: esgd-prepare-lm-text [--ptb-dir DIR] [--data-root data] [--tokenizer word|sentencepiece]
                            [--vocab-size N] [--bptt 35] [--seed N] <task.pt>

Text: with --ptb-dir the standard PTB files (ptb.train.txt, ptb.valid.txt, ptb.test.txt); else the default
corpus' text, <data-root>/{train,dev,test}/text (dev is the validation set), or where those are missing the same
sentences from the corpus' planner (esgd_asr.data.lm_text.corpus_text). Tokens are words (the training
vocabulary, or its --vocab-size most frequent, plus </s> and <unk>) or sentencepiece pieces trained on the
training text; rows of --bptt tokens.
"""
import logging

from esgd_asr.cli.options import KaldiArgumentParser
from esgd_asr.data.lm_text import corpus_text, encode_sets, make_vocabulary, read_ptb
from esgd_asr.errors import cli_main
from esgd_asr.train.task import Task

log = logging.getLogger("esgd-prepare-lm-text")


@cli_main
def main(argv=None):
    parser = KaldiArgumentParser(prog="esgd-prepare-lm-text", description=__doc__.split("\n\n")[0])
    parser.add_argument("--ptb-dir", help="directory of ptb.{train,valid,test}.txt")
    parser.add_argument("--data-root", default="data", help="the ASR recipe's data dir (default corpus' text)")
    parser.add_argument("--tokenizer", default="word", help="word or sentencepiece")
    parser.add_argument("--vocab-size", type=int, help="tokens including </s> and <unk> (word: default all words)")
    parser.add_argument("--bptt", type=int, default=35, help="tokens per training row")
    parser.add_argument("--seed", type=int, default=0, help="of the sentencepiece training")
    parser.add_argument("task")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    sentences = read_ptb(args.ptb_dir) if args.ptb_dir else corpus_text(args.data_root)
    vocabulary = make_vocabulary(args.tokenizer, sentences["train"], args.vocab_size, args.seed)
    sets = encode_sets(sentences, vocabulary, args.bptt)
    source = f"PTB ({args.ptb_dir})" if args.ptb_dir else f"the default corpus ({args.data_root})"
    info = {"dataset": source, "tokenizer": args.tokenizer, "vocab_size": len(vocabulary.tokens),
            "tokens": vocabulary.tokens}
    Task("lm", sets["train"], sets["valid"], sets["test"], info).save(args.task)
    log.info("wrote %s: %s, %s vocabulary of %d, %s", args.task, source, args.tokenizer, len(vocabulary.tokens),
             ", ".join(f"{split} {int((t != -100).sum())} tokens" for split, (_, t) in sets.items()))


if __name__ == "__main__":
    main()

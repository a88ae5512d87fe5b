"""Speed of the pure-Python BPE tokenizer as a ratio to the Hugging Face `tokenizers` library (Rust).

    .venv/bin/python benchmarks/bench_tokenizer.py [n_chars]

Trains both on the same synthetic corpus (stories + JSON + arithmetic, 1 MB by default)
to a 1024-token vocabulary with the same settings, checks they learned the same merges,
then encodes the corpus with each, as one string and as a batch of lines (ours from a
cold cache, as a first call would; tokenizers with `encode_batch`, which may use several
threads), and prints seconds, throughput and the ratio ours / tokenizers (above 1: how
many times slower the readable Python is). Runs in well under a minute.
"""
from __future__ import annotations

import json
import sys
import time


def main() -> int:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    from llminfra_lab.data import corpus
    from llminfra_lab.tokenizer import BPETokenizer, pretokenize

    n_chars = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    vocab_size = 1024
    third = n_chars // 3
    text = corpus("stories", third, 0) + corpus("json", third, 0) + corpus("arithmetic", n_chars - 2 * third, 0)
    pretokenize("warm-up")                          # builds the Unicode classes once, outside the timings

    t0 = time.perf_counter()
    ours = BPETokenizer.train(text, vocab_size)
    t_train_ours = time.perf_counter() - t0

    ref = Tokenizer(models.BPE())
    ref.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    t0 = time.perf_counter()
    ref.train_from_iterator([text], trainer)
    t_train_ref = time.perf_counter() - t0

    same = len(json.loads(ref.to_str())["model"]["merges"]) == len(ours.merges)

    t0 = time.perf_counter()
    ids_ours = ours.encode(text)
    t_enc_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    ids_ref = ref.encode(text).ids
    t_enc_ref = time.perf_counter() - t0
    same = same and ids_ours == ids_ref

    lines = text.splitlines(keepends=True)          # many short documents: the cache and batching matter
    fresh = BPETokenizer.from_dict(ours.to_dict())
    t0 = time.perf_counter()
    batch_ours = [fresh.encode(line) for line in lines]
    t_lines_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    batch_ref = [e.ids for e in ref.encode_batch(lines)]
    t_lines_ref = time.perf_counter() - t0
    same = same and batch_ours == batch_ref

    mb = len(text.encode()) / 1e6
    print(f"corpus: {mb:.2f} MB (stories + JSON + arithmetic), vocab {vocab_size}, {len(ours.merges)} merges; "
          f"identical merges and ids: {same}")
    print(f"{'step':<32} {'ours s':>9} {'tokenizers s':>13} {'ours MB/s':>10} {'ratio ours/tokenizers':>22}")
    rows = (("train", t_train_ours, t_train_ref), ("encode", t_enc_ours, t_enc_ref),
            (f"encode {len(lines)} lines (batch)", t_lines_ours, t_lines_ref))
    for step, a, b in rows:
        print(f"{step:<32} {a:>9.3f} {b:>13.3f} {mb / a:>10.2f} {a / b:>22.1f}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())

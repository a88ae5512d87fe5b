"""Snapshot the book and embed its chunks with the offline all-MiniLM-L6-v2 (chapter 17).

    python benchmarks/embed_book.py --snapshot    # copy the pages listed in _toc.yml, then embed
    python benchmarks/embed_book.py               # re-embed the shipped snapshot
    python benchmarks/embed_book.py --out DIR     # write chunks.json and embeddings.npy to DIR

Writes llminfra_lab/assets/rag/{chunks.json, embeddings.npy} (recursive chunks of at most
CHUNK_WORDS words, float32 unit vectors) and, with --snapshot, llminfra_lab/assets/rag/book/
(the Markdown of the chapters in _toc.yml and glossary.md, with manifest.json naming the date
and commit). Takes about a minute on 2 CPU cores; a GPU is used when present.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from llminfra_lab.rag import dense  # noqa: E402
from llminfra_lab.rag.chunking import recursive_chunks  # noqa: E402
from llminfra_lab.rag.corpus import load_book  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RAG = ROOT / "llminfra_lab" / "assets" / "rag"
CHUNK_WORDS = 150


def snapshot() -> dict:
    """Copy the pages that _toc.yml lists now (chapters and the glossary) into assets/rag/book/."""
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [e["file"] for part in toc["parts"] for e in part["chapters"]]
    stems = [f for f in files if f.startswith("chapters/")] + ["glossary"]
    book = RAG / "book"
    if book.exists():
        shutil.rmtree(book)
    book.mkdir(parents=True)
    for f in stems:
        shutil.copy(ROOT / f"{f}.md", book / f"{Path(f).name}.md")
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    manifest = {"date": datetime.date.today().isoformat(), "commit": commit,
                "source": "the pages listed in _toc.yml at that commit, copied verbatim",
                "files": [Path(f).name for f in stems]}
    (book / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--snapshot", action="store_true", help="copy the book's pages first")
    ap.add_argument("--out", type=Path, default=RAG, help="directory for chunks.json and embeddings.npy")
    args = ap.parse_args()
    if args.snapshot:
        print("snapshot:", snapshot())
    chunks = recursive_chunks(load_book(), CHUNK_WORDS)
    t0 = time.perf_counter()
    vecs = dense.embed([c.indexed for c in chunks])
    print(f"{len(chunks)} chunks embedded in {time.perf_counter() - t0:.1f} s")
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {"model": dense.MODEL_NAME, "chunker": f"recursive_chunks(load_book(), {CHUNK_WORDS})",
            "chunks": [{"section": c.section, "title": c.title, "text": c.text} for c in chunks]}
    (args.out / dense.INDEX_FILES[0]).write_text(json.dumps(meta, ensure_ascii=False) + "\n")
    np.save(args.out / dense.INDEX_FILES[1], vecs.astype(np.float32))


if __name__ == "__main__":
    main()

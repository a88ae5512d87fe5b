"""Physical KV blocks: a reference-counted block allocator, and the contiguous allocator it replaces.

PagedAttention (Kwon et al. 2023) stores a sequence's keys and values in fixed-size blocks of
`block_size` token slots, anywhere in one shared pool, as an operating system stores a
process's pages in any free frame. `BlockAllocator` hands out block numbers from a free list
and counts how many sequences point at each block:

    allocate()            a free block, reference count 1          (OutOfBlocks when none is left)
    fork(b)               one more sequence shares block b          (count + 1, no copy)
    free(b)               one sequence lets go of b                 (count - 1; at 0 b is free again)
    copy_on_write(b)      about to write into b: b itself if nobody else holds it,
                          otherwise a fresh block (the caller copies b's slots into it)

`ContiguousAllocator` is what systems before vLLM did: one contiguous range of token slots per
request, reserved up front for the longest the request may grow (first fit in a flat arena).
The chapter compares the two on the same trace: reserved-but-unused slots, internal
fragmentation (reserved beyond the final length) and external fragmentation (free slots in
holes too small for the next reservation).
"""
from __future__ import annotations

from collections import deque

from llminfra_lab.checks import nonnegative_int, positive_int

__all__ = ["OutOfBlocks", "BlockAllocator", "ContiguousAllocator"]


class OutOfBlocks(RuntimeError):
    """The pool has no free block (or not enough for the requested step)."""


class BlockAllocator:
    """Block numbers 0 .. num_blocks-1 with reference counts and a FIFO free list."""

    def __init__(self, num_blocks: int):
        positive_int("num_blocks", num_blocks)
        self._free: deque[int] = deque(range(num_blocks))
        self._refs = [0] * num_blocks

    @property
    def num_blocks(self) -> int:
        return len(self._refs)

    @property
    def num_free(self) -> int:
        return len(self._free)

    def allocate(self) -> int:
        """A free block with reference count 1; OutOfBlocks if there is none."""
        if not self._free:
            raise OutOfBlocks(f"all {self.num_blocks} blocks are in use")
        block = self._free.popleft()
        self._refs[block] = 1
        return block

    def fork(self, block: int) -> int:
        """Share `block` with one more owner (reference count + 1); returns the same block."""
        self._check_live(block)
        self._refs[block] += 1
        return block

    def free(self, block: int) -> None:
        """Drop one reference to `block`; at zero it goes back to the free list."""
        self._check_live(block)
        self._refs[block] -= 1
        if self._refs[block] == 0:
            self._free.append(block)

    def refcount(self, block: int) -> int:
        """How many owners share `block` (0 = free)."""
        self._check_index(block)
        return self._refs[block]

    def copy_on_write(self, block: int) -> tuple[int, bool]:
        """(block to write into, whether its contents must be copied from `block`).

        A block with one owner is written in place. A shared block is left to its other owners:
        the caller gets a fresh block (this owner's reference moves to it) and must copy the
        old block's slots before writing.
        """
        self._check_live(block)
        if self._refs[block] == 1:
            return block, False
        fresh = self.allocate()
        self._refs[block] -= 1
        return fresh, True

    def _check_index(self, block: int) -> None:
        nonnegative_int("block", block)
        if block >= self.num_blocks:
            raise ValueError(f"block must be in [0, {self.num_blocks}), got {block}")

    def _check_live(self, block: int) -> None:
        self._check_index(block)
        if self._refs[block] == 0:
            raise ValueError(f"block {block} is free (reference count 0)")


class ContiguousAllocator:
    """A flat arena of `capacity` token slots handing out contiguous ranges, first fit.

    `allocate(owner, size)` returns the start slot of the lowest free range of `size` slots
    or None when no hole is large enough (even if the free slots add up to more: that gap is
    external fragmentation). `release(owner)` frees the owner's range.
    """

    def __init__(self, capacity: int):
        positive_int("capacity", capacity)
        self.capacity = capacity
        self._ranges: dict[object, tuple[int, int]] = {}    # owner -> (start, size)

    def allocate(self, owner: object, size: int) -> int | None:
        positive_int("size", size)
        if owner in self._ranges:
            raise ValueError(f"owner {owner!r} already holds a range")
        for start, hole in self.holes():
            if hole >= size:
                self._ranges[owner] = (start, size)
                return start
        return None

    def release(self, owner: object) -> None:
        if owner not in self._ranges:
            raise ValueError(f"owner {owner!r} holds no range")
        del self._ranges[owner]

    def size_of(self, owner: object) -> int:
        return self._ranges[owner][1]

    def holes(self) -> list[tuple[int, int]]:
        """Free ranges as (start, size), in address order."""
        holes, cursor = [], 0
        for start, size in sorted(self._ranges.values()):
            if start > cursor:
                holes.append((cursor, start - cursor))
            cursor = start + size
        if cursor < self.capacity:
            holes.append((cursor, self.capacity - cursor))
        return holes

    @property
    def num_free(self) -> int:
        return self.capacity - sum(size for _, size in self._ranges.values())

    def unusable_free(self, size: int) -> int:
        """Free slots lying in holes smaller than `size`: external fragmentation for that request."""
        return sum(hole for _, hole in self.holes() if hole < size)

"""A least-recently-used map bounded by bytes: every cache of the process is one of these.

A cache bounded only by its number of entries is bounded by nothing a caller cannot choose:
512 entries of 1 MB documents are half a gigabyte. Each entry here states its size (an
estimate in bytes of what it keeps alive), an entry larger than `max_entry` is not kept at all,
and the least recently used entries leave until the sum fits `budget`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    def __init__(self, budget: int, max_entry: int | None = None) -> None:
        self.budget = budget
        self.max_entry = budget if max_entry is None else min(max_entry, budget)
        self.size = 0  # bytes held, as the entries stated them
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: K) -> V | None:
        found = self._entries.get(key)
        if found is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return found[0]

    def put(self, key: K, value: V, size: int) -> bool:
        """Keep `value` (False when it is too large to keep)."""
        self.pop(key)
        if size > self.max_entry:
            return False
        self._entries[key] = (value, size)
        self.size += size
        while self.size > self.budget:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.size -= dropped
        return True

    def pop(self, key: K) -> V | None:
        found = self._entries.pop(key, None)
        if found is None:
            return None
        self.size -= found[1]
        return found[0]

    def clear(self) -> None:
        self._entries.clear()
        self.size = 0

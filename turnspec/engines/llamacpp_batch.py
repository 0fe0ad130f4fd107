"""Continuous batching on llama.cpp's low-level API: several sequences in one KV cache, decoded together.

Each sequence owns a slot (a llama.cpp sequence id). Every `step()` builds one `llama_batch` with the next
token of every decoding sequence plus as much pending prompt as the batch has room for (prefill interleaved
with decode, oldest first), runs one `llama_decode`, and samples every sequence whose logits came out. A slot
keeps its KV cells after its sequence ends: the next sequence placed there reuses the longest common prefix
(a multi-turn chat pays only for its new turn), and the slot with the longest match is chosen.

One thread drives a Batcher (the engine's owner): nothing here is locked.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .base import EngineError, common_prefix
from .llamacpp_sampling import SequenceSampler, VocabInfo


@dataclass(eq=False)
class Slot:
    id: int
    cached: list[int] = field(default_factory=list)  # the ids whose KV cells this sequence id holds
    busy: bool = False
    last_used: float = 0.0


@dataclass(eq=False)  # compared (and hashed) by identity: a scheduler keys its requests by sequence
class Sequence:
    """One generation in the batch: its slot, what is left to prefill, the token to evaluate next."""

    slot: Slot
    sampler: SequenceSampler
    pending: list[int]  # prompt ids not evaluated yet (then: the last sampled token)
    decoding: bool = False
    logits_at: int = -1  # this step's batch index with this sequence's logits
    done: bool = False
    reused: int = 0  # prompt ids whose KV cells the slot already held (not evaluated again)


@dataclass
class BatchStats:
    """Counters for /health and tests."""

    steps: int = 0
    started: int = 0
    released: int = 0
    max_active: int = 0
    prompt_tokens: int = 0
    reused_tokens: int = 0
    generated_tokens: int = 0


class Batcher:
    """Slots over one llama.cpp context (`n_seq_max` = slots) and a batch buffer of `n_batch` tokens."""

    def __init__(self, llama_cpp: Any, ctx: Any, vocab: Any, n_vocab: int, slots: int, n_batch: int):
        import numpy as np

        self.lc, self.ctx, self.n_batch = llama_cpp, ctx, n_batch
        self.mem = llama_cpp.llama_get_memory(ctx)
        self.info = VocabInfo(llama_cpp, vocab, n_vocab)
        self.slots = [Slot(i) for i in range(slots)]
        self.active: list[Sequence] = []
        self.stats = BatchStats()
        self._batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        b = self._batch
        self._token = np.ctypeslib.as_array(b.token, shape=(n_batch,))
        self._pos = np.ctypeslib.as_array(b.pos, shape=(n_batch,))
        self._n_seq = np.ctypeslib.as_array(b.n_seq_id, shape=(n_batch,))
        self._logits = np.ctypeslib.as_array(b.logits, shape=(n_batch,))
        self._n_seq[:] = 1

    # --- sequences ---------------------------------------------------------------------------------------------
    @property
    def free_slots(self) -> int:
        return sum(not s.busy for s in self.slots)

    def start(self, prompt_ids: list[int], *, temperature: float, top_p: float, seed: int | None,
              constraint: Any = None, logprobs: int | None = None) -> Sequence:
        """Place a new sequence in the free slot whose cache shares the longest prefix with `prompt_ids`."""
        free = [s for s in self.slots if not s.busy]
        if not free:
            raise EngineError("no free slot: every sequence of this engine is busy")
        shared, slot = max(((common_prefix(s.cached, prompt_ids), s) for s in free),
                           key=lambda pair: (pair[0], -pair[1].last_used))
        reuse = min(shared, len(prompt_ids) - 1)  # evaluate >= 1 id for logits
        if not self.lc.llama_memory_seq_rm(self.mem, slot.id, reuse, -1):
            self.lc.llama_memory_seq_rm(self.mem, slot.id, -1, -1)  # this model cannot cut a sequence: start over
            reuse = 0
        slot.cached = list(prompt_ids[:reuse])
        sampler = SequenceSampler(self.info, temperature=temperature, top_p=top_p, seed=seed, constraint=constraint,
                                  logprobs=logprobs)
        slot.busy = True
        seq = Sequence(slot, sampler, list(prompt_ids[reuse:]), reused=reuse)
        self.active.append(seq)
        self.stats.started += 1
        self.stats.prompt_tokens += len(prompt_ids)
        self.stats.reused_tokens += reuse
        self.stats.max_active = max(self.stats.max_active, len(self.active))
        return seq

    def release(self, seq: Sequence) -> None:
        """End a sequence now (finished, stopped or cancelled): its slot is free for the next one at once."""
        if seq.done:
            return
        seq.done = True
        seq.sampler.close()
        seq.slot.busy = False
        seq.slot.last_used = time.monotonic()
        self.active.remove(seq)
        self.stats.released += 1

    # --- one decode step ----------------------------------------------------------------------------------------
    def step(self) -> list[tuple[Sequence, int]]:
        """Decode one batch; return the token sampled for each sequence that got one this step."""
        if not self.active:
            return []
        n = 0
        decoding = [s for s in self.active if s.decoding]
        for seq in decoding:
            n = self._put(n, seq, seq.pending[:1], logits_last=True)
        for seq in self.active:
            if seq.decoding or n >= self.n_batch:
                continue
            chunk = seq.pending[: self.n_batch - n]
            n = self._put(n, seq, chunk, logits_last=len(chunk) == len(seq.pending))
        self._batch.n_tokens = n
        rc = self.lc.llama_decode(self.ctx, self._batch)
        if rc != 0:
            raise EngineError(f"llama_decode failed ({rc}): the KV cache is full or the batch is invalid")
        self.stats.steps += 1
        out = []
        for seq in list(self.active):
            index, seq.logits_at = seq.logits_at, -1
            if index < 0:
                continue
            token = seq.sampler.sample(self.ctx, index)
            seq.pending = [token]
            seq.decoding = True
            out.append((seq, token))
        self.stats.generated_tokens += len(out)
        return out

    def _put(self, n: int, seq: Sequence, ids: list[int], *, logits_last: bool) -> int:
        if not ids:
            return n
        slot = seq.slot
        start = len(slot.cached)
        k = len(ids)
        self._token[n:n + k] = ids
        self._pos[n:n + k] = range(start, start + k)
        self._logits[n:n + k] = 0
        seq_ids = self._batch.seq_id
        for i in range(n, n + k):
            seq_ids[i][0] = slot.id
        if logits_last:
            self._logits[n + k - 1] = 1
            seq.logits_at = n + k - 1
        slot.cached.extend(ids)
        del seq.pending[:k]
        return n + k

    def close(self) -> None:
        for seq in list(self.active):
            self.release(seq)
        if self._batch is not None:
            self.lc.llama_batch_free(self._batch)
            self._batch = None

"""From a streamed split to batches, with sharding across processes, workers, bad-image accounting and an
exactly resumable position.

Design (why it is not just `DataLoader(dataset.map(...))`):
- Each process takes its share with `split_dataset_by_node` after a seeded shuffle. Training streams are
  infinite (epochs follow each other inside the stream, each reshuffled), so every rank runs exactly the
  number of steps the trainer asks for, whatever the shard counts: no rank runs dry and stalls a collective.
- Records arrive undecoded; `ImageStream` decodes and augments them itself, so an undecodable image is
  skipped and reported (rank, worker, epoch, position, key) instead of ending the stream.
- Augmentation randomness is seeded per record from (seed, rank, worker, epoch, position), and the position
  of every worker is tracked, so `StreamLoader.load_state_dict` resumes mid-epoch on exactly the next records
  (skipped records are read but not decoded). `datasets`' own state_dict would refill the shuffle buffer
  differently after a resume; re-reading the epoch to the saved position does not.
- With workers, `StreamLoader` re-imposes round-robin order after a resume, so the batch sequence equals that
  of the uninterrupted run.
"""
from __future__ import annotations

import logging
import warnings
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from .decode import UndecodableImage, open_image
from .sources import ImageSource

logger = logging.getLogger("hf_vision.data")


@dataclass
class BadImage:
    """Where a skipped record sits, and why it was skipped."""

    rank: int
    worker: int
    epoch: int
    position: int  # index in this worker's stream for that epoch
    key: str | None
    reason: str

    def __str__(self) -> str:
        where = f"rank {self.rank} worker {self.worker} epoch {self.epoch} position {self.position}"
        return f"{where}{f' ({self.key})' if self.key else ''}: {self.reason}"


def _record_seed(*parts: int) -> int:
    return hash(tuple(parts)) & 0x7FFF_FFFF_FFFF_FFFF  # tuple-of-int hashes are stable across runs


def _record_key(value: Any) -> str | None:
    return value.get("path") if isinstance(value, dict) else None


class ImageStream(IterableDataset):
    """One process's share of a source as decoded, augmented examples (or collated batches).

    batch_size=None yields examples {"pixel_values": uint8 (3, H, W), "labels": int} for a caller's DataLoader
    (the Trainer); with batch_size the stream collates itself and each batch carries a `_meta` entry that
    `StreamLoader` strips off and uses for its position and bad-image report.
    """

    def __init__(
        self,
        source: ImageSource,
        transform: Callable,
        *,
        batch_size: int | None = None,
        collate: Callable | None = None,
        infinite: bool = True,
        drop_last: bool = False,
        shuffle_buffer: int = 0,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        with_labels: bool = True,
    ) -> None:
        if batch_size is not None and collate is None:
            raise ValueError("batch_size needs a collate function")
        self.source_dataset, self.shuffle_buffer = source.dataset, shuffle_buffer
        self.total_shards = source.dataset.num_shards
        if world_size > 1 and self.total_shards % world_size and rank == 0:  # the same for every rank: say it once
            warnings.warn(
                f"{source.name!r} has {self.total_shards} shards, not a multiple of world_size={world_size}: "
                "every process reads every shard and keeps 1 example in "
                f"{world_size} (slower I/O; ranks may get different example counts, steps stay equal)",
                stacklevel=2,
            )
        self.shards_per_rank = (
            self.total_shards // world_size if self.total_shards % world_size == 0 else self.total_shards
        )
        self.image_column = source.image_column
        self.label_column = source.label_column if with_labels else None
        self.key_column = source.key_column
        self.transform, self.collate = transform, collate
        self.batch_size, self.infinite, self.drop_last = batch_size, infinite, drop_last
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.dataset = self.epoch_dataset(0)
        self.start: dict[int, dict[str, int]] = {}  # worker id -> {"epoch", "position", "batches"}
        self.max_reports = 5

    def epoch_dataset(self, epoch: int):
        """This rank's share of the source, shuffled for `epoch` (shards and a buffer), built afresh per epoch.

        Not `set_epoch`: `datasets` keeps the epoch in a tensor shared with every DataLoader worker, so workers
        that cross epoch boundaries at different times would change each other's epoch (a resumed run then
        reshuffled differently from the uninterrupted one, now and then). A new pipeline per epoch shares nothing.
        """
        from datasets.distributed import split_dataset_by_node

        dataset = self.source_dataset
        if self.shuffle_buffer > 0:
            dataset = dataset.shuffle(seed=(self.seed + 1_000_003 * epoch) % 2**32, buffer_size=self.shuffle_buffer)
        if self.world_size > 1:
            dataset = split_dataset_by_node(dataset, rank=self.rank, world_size=self.world_size)
        return dataset

    def _example(self, record: dict[str, Any], worker: int, epoch: int, position: int) -> dict[str, Any]:
        # torchvision's v2 transforms (the crop, flip and RandAugment draws) take no generator and draw from torch's
        # default CPU generator, so a local torch.Generator cannot carry the record's seed to them. The caller
        # (__iter__) runs this inside torch.random.fork_rng(devices=[]), which restores the global CPU state after
        # each record (tests/test_global_state.py checks it). The CPU generator only: torch.manual_seed would also
        # (lazily) seed accelerators, slowly.
        torch.default_generator.manual_seed(_record_seed(self.seed, self.rank, worker, epoch, position))
        example = {"pixel_values": self.transform(open_image(record[self.image_column]))}
        key = record.get(self.key_column) if self.key_column else None
        example["_key"] = str(key) if key is not None else f"{self.rank}:{worker}:{epoch}:{position}"
        if self.label_column is not None:
            example["labels"] = int(record[self.label_column])
        return example

    def _records(self, worker: int, state: dict[str, int]) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """(epoch, position, record) from the saved position on; epochs follow each other when infinite."""
        while True:
            epoch, seen = state["epoch"], 0
            for position, record in enumerate(self.epoch_dataset(epoch)):
                seen += 1
                if position < state["position"]:
                    continue  # resuming: read but do not decode
                state["position"] = position + 1
                yield epoch, position, record
            if not self.infinite:
                return
            if seen == 0:
                raise RuntimeError(
                    f"rank {self.rank} worker {worker} got no examples from its share of the dataset "
                    f"({self.total_shards} shards, world_size={self.world_size}); use fewer processes or workers"
                )
            state["epoch"], state["position"] = epoch + 1, 0

    def _emit(self, examples: list[dict[str, Any]], bad: list[BadImage], worker: int,
              state: dict[str, int]) -> dict[str, Any]:
        state["batches"] += 1
        keys = [e.pop("_key") for e in examples]
        batch = self.collate(examples) if examples else {}
        batch["_meta"] = {"worker": worker, "state": dict(state), "bad": [asdict(b) for b in bad], "keys": keys}
        return batch

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        state = dict(self.start.get(worker, {"epoch": 0, "position": 0, "batches": 0}))
        examples: list[dict[str, Any]] = []
        bad: list[BadImage] = []
        reported = consecutive_bad = 0
        for epoch, position, record in self._records(worker, state):
            try:
                with torch.random.fork_rng(devices=[]):  # leave the caller's RNG alone (num_workers=0)
                    example = self._example(record, worker, epoch, position)
            except UndecodableImage as err:
                item = BadImage(self.rank, worker, epoch, position, _record_key(record.get(self.image_column)),
                                str(err))
                bad.append(item)
                if self.batch_size is None and reported < self.max_reports:
                    logger.warning("skipped undecodable image: %s", item)
                    reported += 1
                consecutive_bad += 1
                if consecutive_bad >= 10_000:
                    raise RuntimeError(f"{consecutive_bad} undecodable images in a row; last: {item}") from err
                continue
            consecutive_bad = 0
            if self.batch_size is None:
                example.pop("_key")
                yield example
                continue
            examples.append(example)
            if len(examples) == self.batch_size:
                yield self._emit(examples, bad, worker, state)
                examples, bad = [], []
        if self.batch_size is not None and (bad or (examples and not self.drop_last)):
            yield self._emit([] if self.drop_last else examples, bad, worker, state)


class StreamLoader:
    """Batches from an `ImageStream` (optionally through DataLoader workers), with a resumable position.

    Iterating again continues where the previous iteration stopped. `state_dict()` is small (a few ints per
    worker) and goes into the training checkpoint; `load_state_dict` needs the same num_workers.
    """

    def __init__(self, stream: ImageStream, *, num_workers: int = 0, pin_memory: bool = False,
                 prefetch_factor: int = 2) -> None:
        if stream.batch_size is None:
            raise ValueError("StreamLoader needs an ImageStream built with batch_size")
        if num_workers > stream.shards_per_rank:
            warnings.warn(
                f"num_workers={num_workers} > {stream.shards_per_rank} shards per process; "
                f"using {stream.shards_per_rank} workers (the others would get no data)",
                stacklevel=2,
            )
            num_workers = stream.shards_per_rank
        self.stream, self.num_workers = stream, num_workers
        self.pin_memory, self.prefetch_factor = pin_memory, prefetch_factor
        self.worker_states: dict[int, dict[str, int]] = {}
        self.next_worker = 0
        self.bad_images = 0  # occurrences: an endless stream meets the same bad file once per epoch
        self.bad_files: set[str] = set()  # distinct files (by key; a record without one counts as its own file)
        self.first_bad: list[str] = []
        self.last_keys: list[str] = []  # ids of the examples in the last batch (audits, multi-process tests)
        self.max_reports = 5

    def _loader(self) -> DataLoader:
        self.stream.start = {w: dict(s) for w, s in self.worker_states.items()}
        kwargs = {"prefetch_factor": self.prefetch_factor} if self.num_workers else {}
        # A private generator: each DataLoader iterator draws a base seed from it, which would otherwise advance
        # the caller's global RNG (a resumed run restores that RNG, then starts iterating: one draw apart from
        # the uninterrupted run). Records are seeded explicitly, so the base seed's value does not matter.
        return DataLoader(self.stream, batch_size=None, num_workers=self.num_workers,
                          pin_memory=self.pin_memory, generator=torch.Generator().manual_seed(self.stream.seed),
                          **kwargs)

    def _note(self, meta: dict[str, Any]) -> None:
        self.worker_states[meta["worker"]] = meta["state"]
        self.last_keys = meta["keys"]
        for item in meta["bad"]:
            self.bad_images += 1
            self.bad_files.add(item["key"] or f"rank {item['rank']} worker {item['worker']} position {item['position']}")
            if len(self.first_bad) < self.max_reports:
                text = str(BadImage(**item))
                self.first_bad.append(text)
                logger.warning("skipped undecodable image: %s", text)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        workers = max(1, self.num_workers)
        if not self.stream.infinite:  # a finite pass: order does not matter, no reordering (a worker may end early)
            for batch in self._loader():
                self._note(batch.pop("_meta"))
                if batch:  # a trailing batch may carry only the report of skipped images
                    yield batch
            return
        waiting: dict[int, deque] = {w: deque() for w in range(workers)}
        for batch in self._loader():
            meta = batch.pop("_meta")
            waiting[meta["worker"]].append((batch, meta))
            # Workers answer round-robin from worker 0; a resumed run may need to start at another one.
            while waiting[self.next_worker]:
                batch, meta = waiting[self.next_worker].popleft()
                self._note(meta)
                self.next_worker = (self.next_worker + 1) % workers
                yield batch

    def report(self) -> str:
        if not self.bad_images:
            return "no undecodable images"
        return (f"skipped {self.bad_images} undecodable image(s) from {len(self.bad_files)} file(s); first: "
                + "; ".join(self.first_bad))

    def state_dict(self) -> dict[str, Any]:
        return {
            "num_workers": self.num_workers,
            "next_worker": self.next_worker,
            "workers": {str(w): dict(s) for w, s in self.worker_states.items()},
            "bad_images": self.bad_images,
            "bad_files": sorted(self.bad_files),
            "first_bad": list(self.first_bad),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["num_workers"] != self.num_workers:
            raise ValueError(
                f"the saved data position is for num_workers={state['num_workers']}, this run has "
                f"{self.num_workers}; resume with the same --dataloader_num_workers to continue exactly"
            )
        self.next_worker = state["next_worker"]
        self.worker_states = {int(w): dict(s) for w, s in state["workers"].items()}
        self.bad_images, self.first_bad = state.get("bad_images", 0), list(state.get("first_bad", []))
        self.bad_files = set(state.get("bad_files", []))

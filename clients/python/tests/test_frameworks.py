"""The dataloader-worker split, the PyTorch adapter (with a stand-in torch module, and with
torch hidden) and the Hugging Face generator, none of which needs torch or datasets."""

from __future__ import annotations

import importlib
import sys
import types
from itertools import islice
from types import SimpleNamespace
from typing import List

import pytest
from conftest import Fleet

from mmssr_feed import Feed, FeedIterable, PositionError, effective_split, hf_generator, shard_owner


def ids_of(rows) -> List[str]:
    return [r["id"] for r in rows]


def worker(w: int, n: int):
    return lambda: SimpleNamespace(id=w, num_workers=n)


def test_effective_split_formula():
    assert effective_split(0, 1, None) == (0, 1)
    assert effective_split(1, 2, None) == (1, 2)
    assert effective_split(1, 2, SimpleNamespace(id=2, num_workers=3)) == (5, 6)
    with pytest.raises(ValueError):
        effective_split(2, 2, None)
    with pytest.raises(ValueError):
        effective_split(0, 1, SimpleNamespace(id=3, num_workers=3))


@pytest.mark.parametrize("world_size,num_workers", [(1, 2), (2, 2), (3, 2), (2, 3)])
def test_workers_of_all_ranks_cover_everything_once(fleet: Fleet, world_size: int, num_workers: int):
    seen: List[str] = []
    for rank in range(world_size):
        for w in range(num_workers):
            ds = FeedIterable(fleet.root, rank, world_size, worker_info_fn=worker(w, num_workers))
            ids = ids_of(ds)
            index, count = rank * num_workers + w, world_size * num_workers
            assert ds.split() == (index, count)
            # the same shards as a plain Feed for that effective index
            assert ids == ids_of(Feed(fleet.root, index, count).rows())
            mine = [lb for lb in Fleet.ORDER if shard_owner(fleet.file(lb), count) == index]
            assert ids == fleet.expected(mine)
            seen += ids
    assert sorted(seen) == sorted(fleet.expected())


def test_with_position_tokens_resume_each_worker(fleet: Fleet):
    n = 2
    tokens = {}
    head: List[str] = []
    for w in range(n):
        ds = FeedIterable(fleet.root, 0, 1, worker_info_fn=worker(w, n), with_position=True)
        rows = list(islice(iter(ds), 3))
        head += ids_of(rows)
        if rows:
            tok = rows[-1]["_position"]
            tokens[tok["rank"]] = tok
    # a worker that had read nothing has no token yet: start it with a fresh one
    for w in range(n):
        tokens.setdefault(w, {"v": 1, "rank": w, "world_size": n, "done": {}, "shard": None, "row": 0})
    rest: List[str] = []
    for start in (tokens, list(tokens.values())):  # a mapping, or a list of tokens
        rest = []
        for w in range(n):
            rest += ids_of(FeedIterable(fleet.root, 0, 1, worker_info_fn=worker(w, n), start=start))
        assert sorted(head + rest) == sorted(fleet.expected())
        assert len(head + rest) == len(fleet.expected())
    with pytest.raises(PositionError, match="no position token for reader 1 of 2"):
        list(FeedIterable(fleet.root, 0, 1, worker_info_fn=worker(1, n), start={0: tokens[0]}))


def test_transform_is_applied(fleet: Fleet):
    assert list(FeedIterable(fleet.root, transform=lambda r: r["id"])) == fleet.expected()


@pytest.fixture
def fake_torch(monkeypatch):
    """A stand-in torch with just what mmssr_feed.torch uses: the real import path, no torch."""
    calls = {"n": 0}

    class IterableDataset:  # like torch's: an abstract-ish __iter__ first in the MRO
        def __iter__(self):
            raise NotImplementedError

    def get_worker_info():
        calls["n"] += 1
        return SimpleNamespace(id=1, num_workers=2)

    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch.utils")
    data = types.ModuleType("torch.utils.data")
    data.IterableDataset = IterableDataset
    data.get_worker_info = get_worker_info
    torch.utils = utils
    utils.data = data
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch.utils", utils)
    monkeypatch.setitem(sys.modules, "torch.utils.data", data)
    monkeypatch.delitem(sys.modules, "mmssr_feed.torch", raising=False)
    yield SimpleNamespace(module=data, calls=calls)
    sys.modules.pop("mmssr_feed.torch", None)


def test_torch_dataset_uses_get_worker_info(fleet: Fleet, fake_torch):
    mod = importlib.import_module("mmssr_feed.torch")
    ds = mod.FeedDataset(fleet.root, 0, 1)
    assert isinstance(ds, fake_torch.module.IterableDataset)
    ids = ids_of(ds)
    assert fake_torch.calls["n"] >= 1
    assert ids == ids_of(Feed(fleet.root, 1, 2).rows())  # worker 1 of 2
    ds2 = Feed(fleet.root, 0, 1).torch_dataset(transform=lambda r: r["id"])
    assert list(ds2) == ids


def test_torch_missing_gives_a_clear_import_error(fleet: Fleet, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch fails, installed or not
    monkeypatch.delitem(sys.modules, "mmssr_feed.torch", raising=False)
    with pytest.raises(ImportError, match="needs PyTorch.*pip install"):
        importlib.import_module("mmssr_feed.torch")
    with pytest.raises(ImportError, match="needs PyTorch"):
        Feed(fleet.root).torch_dataset()
    sys.modules.pop("mmssr_feed.torch", None)


def test_hf_generator_parts_split_a_rank(fleet: Fleet):
    assert ids_of(hf_generator(fleet.root, rank=1, world_size=2)) == ids_of(Feed(fleet.root, 1, 2).rows())
    # what HF hands two dataloader workers of gen_kwargs {"parts": [0, 1, 2, 3], ...}
    a = ids_of(hf_generator(fleet.root, rank=1, world_size=2, parts=[0, 2], num_parts=4))
    b = ids_of(hf_generator(fleet.root, rank=1, world_size=2, parts=[1, 3], num_parts=4))
    assert not set(a) & set(b)
    # together: what 4 torch workers of rank 1 read
    workers = [i for w in range(4) for i in ids_of(FeedIterable(fleet.root, 1, 2, worker_info_fn=worker(w, 4)))]
    assert sorted(a + b) == sorted(workers)
    rank0 = ids_of(hf_generator(fleet.root, rank=0, world_size=2, parts=[0, 1, 2, 3], num_parts=4))
    assert sorted(rank0 + a + b) == sorted(fleet.expected())
    # part p of rank r is effective shard r * num_parts + p, like torch workers
    assert ids_of(hf_generator(fleet.root, rank=1, world_size=2, parts=[3], num_parts=4)) == ids_of(
        Feed(fleet.root, 7, 8).rows()
    )


def test_hf_datasets_when_installed(fleet: Fleet):
    datasets = pytest.importorskip("datasets")
    ds = datasets.IterableDataset.from_generator(
        hf_generator, gen_kwargs={"out_dir": fleet.root, "columns": ("id", "score_ocr")}
    )
    assert [r["id"] for r in ds] == fleet.expected()


def test_hf_dataset_with_parts_when_installed(fleet: Fleet):
    pytest.importorskip("datasets")
    from mmssr_feed import hf_dataset

    ds = hf_dataset(fleet.root, rank=1, world_size=2, num_parts=4, columns=["id"])
    assert ds.n_shards == 4  # HF can hand the parts to up to 4 dataloader workers
    workers = [i for w in range(4) for i in ids_of(FeedIterable(fleet.root, 1, 2, worker_info_fn=worker(w, 4)))]
    assert sorted(r["id"] for r in ds) == sorted(workers)


def test_dataset_pickles_for_worker_processes(fleet: Fleet):
    import pickle

    ds = pickle.loads(pickle.dumps(FeedIterable(fleet.root, 0, 1, columns=["id"])))
    assert ids_of(ds) == fleet.expected()

"""Grain pipeline: batch layout, exact resume, per-process shares, eval padding, transposition, the memory cache."""

import json
import re
import shutil

import numpy as np
import pytest

from musicvae_jax.convert import convert
from musicvae_jax.demo_corpus import write_demo_corpus
from musicvae_jax.input_pipeline import _Transpose, grain_iterator, load_metadata, make_dataset, make_iterator


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    write_demo_corpus(root / "midi", num_songs=8)
    return {
        name: convert([str(root / "midi")], root / name, name, workers=1) and root / name
        for name in ("melody_2bar", "trio_16bar", "groove_2bar")
    }


def take(iterator, n):
    return [next(iterator) for _ in range(n)]


@pytest.mark.parametrize(
    "name, fields",
    [
        ("melody_2bar", {"tokens": ((8, 32), np.int32)}),
        ("trio_16bar", {"melody": ((8, 256), np.int32), "bass": ((8, 256), np.int32), "drums": ((8, 256), np.int32)}),
        ("groove_2bar", {k: ((8, 32, 9), np.float32) for k in ("hits", "velocities", "offsets")}),
    ],
)
def test_batch_layout(data, name, fields):
    batch = next(make_iterator(data[name], "train", global_batch_size=8, train=True))
    for key, (shape, dtype) in fields.items():
        assert batch[key].shape == shape and batch[key].dtype == dtype
    np.testing.assert_array_equal(batch["lengths"], shape[1])
    np.testing.assert_array_equal(batch["weights"], 1.0)


def test_restored_iterator_continues_with_the_same_batches(data):
    kwargs = dict(global_batch_size=16, train=True, seed=7)
    iterator = make_iterator(data["melody_2bar"], "train", **kwargs)
    take(iterator, 5)
    state = iterator.get_state()
    expected = take(iterator, 40)  # runs past the end of the first epoch
    resumed = make_iterator(data["melody_2bar"], "train", **kwargs)
    resumed.set_state(state)
    for a, b in zip(expected, take(resumed, 40), strict=True):
        np.testing.assert_array_equal(a["tokens"], b["tokens"])
    same_seed = next(make_iterator(data["melody_2bar"], "train", **kwargs))
    other_seed = next(make_iterator(data["melody_2bar"], "train", global_batch_size=16, train=True, seed=8))
    assert not np.array_equal(other_seed["tokens"], same_seed["tokens"])


def test_epochs_are_reshuffled(data):
    iterator = make_iterator(data["melody_2bar"], "train", global_batch_size=1, train=True, seed=0)
    one_pass = make_iterator(data["melody_2bar"], "train", global_batch_size=64, train=False)
    size = sum(b["weights"].sum() for b in one_pass)
    first, second = take(iterator, int(size)), take(iterator, int(size))
    key = lambda b: b["tokens"].tobytes()  # noqa: E731
    assert sorted(map(key, first)) == sorted(map(key, second))
    assert list(map(key, first)) != list(map(key, second))


def test_processes_read_disjoint_shares_that_cover_the_split(data):
    def examples(process_index, process_count):
        batches = make_iterator(
            data["trio_16bar"],
            "eval",
            global_batch_size=4,
            train=False,
            process_index=process_index,
            process_count=process_count,
        )
        return [
            b["melody"][i].tobytes() + b["drums"][i].tobytes()
            for b in batches
            for i in range(len(b["weights"]))
            if b["weights"][i]
        ]

    whole = examples(0, 1)
    first, second = examples(0, 2), examples(1, 2)
    assert len(first) + len(second) == len(whole)
    assert sorted(first + second) == sorted(whole)


@pytest.mark.parametrize("train", [True, False])
def test_process_shares_stack_into_the_single_process_global_batch(data, train):
    """Global batches do not depend on the process count, and every process yields as many batches."""

    def batches(process_index, process_count):
        iterator = make_iterator(
            data["melody_2bar"],
            "train" if train else "eval",
            global_batch_size=12,
            train=train,
            seed=5,
            process_index=process_index,
            process_count=process_count,
        )
        return take(iterator, 30) if train else list(iterator)

    whole = batches(0, 1)
    shares = [batches(p, 3) for p in range(3)]
    assert all(len(share) == len(whole) for share in shares)
    for b, global_batch in enumerate(whole):
        for key in ("tokens", "weights"):
            stacked = np.concatenate([share[b][key] for share in shares])
            np.testing.assert_array_equal(stacked, global_batch[key])
    if not train:
        assert whole[-1]["weights"].sum() < 12  # the split does not fill its last batch: padding was exercised


def test_a_process_whose_share_is_all_padding_yields_rows_of_weight_zero(data):
    one_at_a_time = make_iterator(data["melody_2bar"], "eval", global_batch_size=1, train=False)
    num_records = sum(int(b["weights"].sum()) for b in one_at_a_time)
    share = dict(global_batch_size=2 * num_records, process_index=1, process_count=2)
    second = list(make_iterator(data["melody_2bar"], "eval", train=False, **share))
    assert len(second) == 1 and second[0]["tokens"].shape == (num_records, 32)
    assert not second[0]["weights"].any() and not second[0]["tokens"].any()


def test_a_shuffled_eval_pass_reads_the_split_once_in_a_fixed_sample_order(data):
    """What a partial eval reads first is drawn from the whole split, the same at every evaluation."""

    def rows(**kwargs):
        batches = list(make_iterator(data["melody_2bar"], "eval", global_batch_size=12, train=False, **kwargs))
        return [b["tokens"][i].tobytes() for b in batches for i in range(len(b["weights"])) if b["weights"][i]], batches

    stored, _ = rows()
    shuffled, batches = rows(shuffled=True)
    assert sorted(shuffled) == sorted(stored) and shuffled != stored  # every record once, in another order
    assert rows(shuffled=True)[0] == shuffled
    real = int(batches[-1]["weights"].sum())
    assert 0 < real < 12 and not batches[-1]["tokens"][real:].any()  # the padding is still at the end
    halves = [rows(shuffled=True, process_index=p, process_count=2)[1] for p in range(2)]
    for b, whole in enumerate(batches):
        np.testing.assert_array_equal(np.concatenate([h[b]["tokens"] for h in halves]), whole["tokens"])


def test_eval_pass_pads_the_last_batch(data):
    batches = list(make_iterator(data["groove_2bar"], "eval", global_batch_size=64, train=False))
    assert all(b["hits"].shape[0] == 64 for b in batches)
    last = batches[-1]
    real = int(last["weights"].sum())
    assert 0 < real <= 64
    assert not last["hits"][real:].any()


def test_transposition_shifts_melodic_parts_together_and_keeps_every_window():
    transpose = _Transpose(("melody", "bass"), -3, 3)
    batch = {
        "melody": np.array([[0, 50, 1, 60], [2, 89, 0, 0], [0, 0, 1, 0]], np.int32),
        "bass": np.array([[20, 0, 0, 1], [30, 0, 0, 0], [0, 0, 0, 0]], np.int32),
        "drums": np.array([[1, 0, 0, 3], [0, 0, 0, 0], [5, 0, 0, 0]], np.int32),
    }
    rng = np.random.default_rng(0)
    shifts = set()
    for _ in range(30):
        out = transpose.random_map(batch, rng)
        shift = out["melody"][0, 1] - 50
        shifts.add(int(shift))
        np.testing.assert_array_equal(out["melody"][0], [0, 50 + shift, 1, 60 + shift])
        np.testing.assert_array_equal(out["bass"][0], [20 + shift, 0, 0, 1])
        # lowest note-on 2 and highest 89: no shift but 0 keeps both in range
        np.testing.assert_array_equal(out["melody"][1], batch["melody"][1])
        np.testing.assert_array_equal(out["bass"][1], batch["bass"][1])
        np.testing.assert_array_equal(out["melody"][2], batch["melody"][2])  # no notes: nothing moves
        np.testing.assert_array_equal(out["drums"], batch["drums"])
    assert shifts == set(range(-3, 4))


def test_transposition_in_the_pipeline_keeps_tokens_in_range(data):
    plain = next(make_iterator(data["trio_16bar"], "train", global_batch_size=32, train=True, seed=1))
    moved = next(
        make_iterator(data["trio_16bar"], "train", global_batch_size=32, train=True, seed=1, transpose_range=(-5, 5))
    )
    assert not np.array_equal(plain["melody"], moved["melody"])
    for key in ("melody", "bass"):
        assert moved[key].min() >= 0 and moved[key].max() <= 89
    with pytest.raises(ValueError, match="no melodic part"):
        make_iterator(data["groove_2bar"], "train", global_batch_size=8, train=True, transpose_range=(-2, 2))


def test_a_position_saved_with_some_workers_restores_with_any_number(data):
    """Workers (each with its own memory cache) deliver the batches read in-process from the shards, and the
    position saved with one number of worker processes resumes with another on the next batch."""
    kwargs = dict(global_batch_size=64, train=True, seed=3)
    expected = take(make_iterator(data["melody_2bar"], "train", **kwargs), 10)  # past the first epoch
    with_two = make_iterator(data["melody_2bar"], "train", num_workers=2, cache_mb=1, **kwargs)
    got = take(with_two, 3)
    in_process = make_iterator(data["melody_2bar"], "train", **kwargs)
    in_process.set_state(with_two.get_state())
    got += take(in_process, 2)
    with_three = make_iterator(data["melody_2bar"], "train", num_workers=3, **kwargs)
    with_three.set_state(in_process.get_state())
    got += take(with_three, 5)
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a["tokens"], b["tokens"])


@pytest.mark.parametrize("workers", [0, 2])
def test_positions_saved_by_grains_own_iterators_restore(data, workers):
    """Checkpoints written before BatchIterator hold Grain's iterator state, which differs with workers."""
    kwargs = dict(global_batch_size=64, train=True, seed=3)
    expected = take(make_iterator(data["melody_2bar"], "train", **kwargs), 6)
    grains = grain_iterator(make_dataset(data["melody_2bar"], "train", **kwargs), workers)
    take(grains, 3)
    resumed = make_iterator(data["melody_2bar"], "train", **kwargs)
    resumed.set_state(json.dumps(grains.get_state()).encode())  # as Grain's checkpoint handler wrote it
    for a, b in zip(expected[3:], take(resumed, 3), strict=True):
        np.testing.assert_array_equal(a["tokens"], b["tokens"])
    with pytest.raises(ValueError, match="not a data position"):
        resumed.set_state(b'{"cursor": 3}')


@pytest.mark.parametrize("name", ["groove_2bar", "trio_16bar"])
def test_batches_from_the_memory_cache_are_those_read_from_the_shards(data, name):
    """Over three epochs (the first fills the cache), with transposition, and a resume mid-epoch."""
    kwargs = dict(global_batch_size=16, train=True, seed=4)
    if name == "trio_16bar":
        kwargs["transpose_range"] = (-3, 3)
    one_pass = make_iterator(data[name], "train", global_batch_size=64, train=False)
    batches = 3 * int(sum(b["weights"].sum() for b in one_pass)) // 16 + 1
    from_shards = take(make_iterator(data[name], "train", **kwargs), batches)
    cached = make_iterator(data[name], "train", cache_mb=1, **kwargs)
    from_memory = take(cached, batches // 2)
    resumed = make_iterator(data[name], "train", cache_mb=1, **kwargs)
    resumed.set_state(cached.get_state())  # a fresh cache, mid-epoch
    from_memory += take(resumed, batches - batches // 2)
    for a, b in zip(from_shards, from_memory, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert a[key].dtype == b[key].dtype
            np.testing.assert_array_equal(a[key], b[key])


def test_after_the_first_epoch_a_cached_split_is_not_read_from_the_shards(data, tmp_path):
    copy = tmp_path / "groove_2bar"
    shutil.copytree(data["groove_2bar"], copy)
    kwargs = dict(global_batch_size=16, train=True, seed=2)
    one_epoch = -(-load_metadata(copy)["splits"]["train"]["examples"] // 16)
    expected = take(make_iterator(copy, "train", **kwargs), 2 * one_epoch)
    cached, streamed = make_iterator(copy, "train", cache_mb=1, **kwargs), make_iterator(copy, "train", **kwargs)
    first_epoch = take(cached, one_epoch)
    take(streamed, one_epoch)
    for shard in copy.glob("train-*.array_record"):  # overwritten in place: open readers see the zeros
        shard.write_bytes(bytes(shard.stat().st_size))
    for a, b in zip(expected, first_epoch + take(cached, one_epoch), strict=True):
        np.testing.assert_array_equal(a["hits"], b["hits"])
        np.testing.assert_array_equal(a["offsets"], b["offsets"])
    with pytest.raises(RuntimeError, match="Corrupted"):  # the shards are gone for a reader without the cache
        take(streamed, one_epoch)


def test_a_record_whose_dtype_disagrees_with_the_metadata_is_named_not_cast(data, tmp_path):
    copy = tmp_path / "groove_2bar"
    shutil.copytree(data["groove_2bar"], copy)
    metadata = json.loads((copy / "metadata.json").read_text())
    metadata["fields"]["velocities"]["dtype"] = "uint8"
    (copy / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ValueError, match="record field velocities is stored as float16, metadata says uint8"):
        next(make_iterator(copy, "train", global_batch_size=8, train=True, cache_mb=1))


def test_the_cache_holds_a_train_split_within_its_limit_only(data, caplog):
    caplog.set_level("INFO")
    next(make_iterator(data["groove_2bar"], "train", global_batch_size=8, train=True, cache_mb=1))
    assert re.search(r"the train split's \d+ records \([\d.]+ MB\) are kept in memory", caplog.text)
    caplog.clear()
    next(make_iterator(data["groove_2bar"], "train", global_batch_size=8, train=True, cache_mb=1e-6))
    next(make_iterator(data["groove_2bar"], "eval", global_batch_size=8, train=False, cache_mb=1))
    assert "kept in memory" not in caplog.text


def test_bad_arguments_name_the_problem(data):
    with pytest.raises(ValueError, match="does not divide"):
        make_iterator(data["melody_2bar"], "train", global_batch_size=9, train=True, process_count=2)
    with pytest.raises(ValueError, match="no split 'valid'"):
        make_iterator(data["melody_2bar"], "valid", global_batch_size=8, train=True)
    with pytest.raises(FileNotFoundError, match="metadata.json"):
        make_iterator(data["melody_2bar"].parent, "train", global_batch_size=8, train=True)

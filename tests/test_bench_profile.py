"""bench/'s tools: profile_step's trace summary (device threads, busy time as one union), step_memory, compare_trees,
the machine's name in the tables, infill_baseline's scores."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from common import cpu_name  # noqa: E402
from profile_step import device_threads, kind_of, summarize, thread_names, trace_cpu_ops  # noqa: E402


def _meta(kind, pid, name, tid=0):
    return {"ph": "M", "name": kind, "pid": pid, "tid": tid, "args": {"name": name}}


def _span(pid, tid, name, ts, dur):
    return {"ph": "X", "pid": pid, "tid": tid, "name": name, "ts": ts, "dur": dur}


def gpu_trace():
    return [
        _meta("process_name", 1, "/host:CPU"),
        _meta("thread_name", 1, "python", tid=10),
        _meta("process_name", 2, "/device:GPU:0"),
        _meta("thread_name", 2, "Stream #13(Compute)", tid=20),
        _meta("thread_name", 2, "Stream #14(MemcpyH2D)", tid=21),
        _meta("thread_name", 2, "XLA Ops", tid=22),
        _span(1, 10, "PjitFunction(train_step)", 0, 100),
        _span(2, 20, "gemm", 10, 30),  # 10-40
        _span(2, 21, "copy", 30, 20),  # 30-50, overlaps the gemm by 10
        _span(2, 20, "gemm", 60, 10),  # 60-70
        _span(2, 22, "fusion.1", 0, 100),  # an op line spanning everything: not a kernel
    ]


def test_device_threads_are_the_gpu_streams():
    chosen = device_threads(thread_names(gpu_trace()))
    assert sorted(chosen) == [(2, 20), (2, 21)]


def test_busy_time_is_the_union_of_device_events():
    text = summarize(gpu_trace())
    assert "Traced window 0.1 ms" in text
    assert "Device busy 0.1 ms (50% of the window, 0.1 ms a step); events sum to 0.1 ms" in text  # 10-50, 60-70
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `gemm` | 2 | 0.04 | 20.0 | 80% |")
    assert rows[1].startswith("| `copy` | 1 | 0.02 | 20.0 | 40% |")


def cpu_trace():
    """XLA's CPU runtime with op tracing on: ops on two worker threads, inside runtime events that wrap them."""
    return [
        _meta("process_name", 1, "/host:CPU"),
        _meta("thread_name", 1, "tf_XLAPjRtCpuClient/1", tid=11),
        _meta("thread_name", 1, "tf_XLAEigen/2", tid=12),
        _meta("thread_name", 1, "tf_XLAEigen/3", tid=13),
        _span(1, 11, "ThunkExecutor::Execute (wait for completion)", 0, 200),
        _span(1, 12, "ThunkExecutor::Execute", 0, 200),
        _span(1, 12, "ynn_fusion.3", 10, 40),  # a product: 10-50
        _span(1, 13, "wrapped_copy.1", 30, 40),  # 30-70, overlapping the product by 20
        _span(1, 12, "select_dynamic-update-slice_fusion.2", 110, 10),
        _span(1, 12, "end: ynn_fusion.3", 50, 1),
        _span(1, 13, "SlinkyThreadPool::Await", 70, 30),
        _span(1, 12, "multiply_tanh_fusion", 130, 20),
        _span(1, 12, "ynn_fusion.3", 160, 40),  # the same product in the second traced step
    ]


def test_cpu_ops_are_the_worker_threads_events_without_the_runtimes():
    assert sorted(device_threads(thread_names(cpu_trace())).values()) == [
        "/host:CPU tf_XLAEigen/2",
        "/host:CPU tf_XLAEigen/3",
    ]
    text = summarize(cpu_trace(), steps=2)
    # Busy: 10-70, 110-120, 130-150, 160-200 of a 200-us window.
    assert "Device busy 0.1 ms (65% of the window, 0.1 ms a step); events sum to 0.1 ms" in text
    kinds = [line for line in text.splitlines() if line.startswith("| ") and " | 0.0" in line and "`" not in line]
    assert kinds[0] == "| products | 1 | 0.04 | 0.04 | 62% |", kinds
    assert "| copies | 0.5 | 0.02 | 0.02 | 31% |" in kinds
    assert "| per-step buffer writes | 0.5 | 0.01 | 0.01 | 8% |" in kinds
    assert "| other elementwise loops | 0.5 | 0.01 | 0.01 | 15% |" in kinds
    assert "ThunkExecutor" not in text.split("| thread |")[0] and "Slinky" not in text.split("| thread |")[0]


def test_kinds_follow_the_words_xla_names_its_kernels_with():
    assert kind_of("nvjet_tst_128x256_64x4_2x1_v_bz_coopB_TNT") == "products"
    assert kind_of("gemm_fusion_dot_12") == "products"
    assert kind_of("ynn_fusion.26") == "products"
    assert kind_of("copy_gather_fusion.2") == "gathers and scatters"
    assert kind_of("add_transpose_fusion.8") == "transposes"
    assert kind_of("loop_dynamic_update_slice_fusion_3") == "per-step buffer writes"
    assert kind_of("bitcast_copy_fusion.1") == "copies"
    assert kind_of("input_reduce_fusion") == "reductions"
    assert kind_of("convert_multiply_fusion") == "other elementwise loops"


def test_op_tracing_is_set_once_and_only_where_jax_runs_on_the_cpu_alone(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
    trace_cpu_ops()
    trace_cpu_ops()
    assert os.environ["XLA_FLAGS"] == "--xla_dump_to=/tmp/x --xla_cpu_enable_xprof_traceme=true"
    monkeypatch.setenv("JAX_PLATFORMS", "cuda")
    monkeypatch.delenv("XLA_FLAGS")
    trace_cpu_ops()
    assert "XLA_FLAGS" not in os.environ


def test_cpu_trace_falls_back_to_the_client_thread():
    events = [
        _meta("process_name", 1, "/host:CPU"),
        _meta("thread_name", 1, "python", tid=10),
        _meta("thread_name", 1, "tf_XLAPjRtCpuClient/123", tid=11),
        _span(1, 10, "PjitFunction(f)", 0, 10),
        _span(1, 11, "dot", 2, 6),
    ]
    assert list(device_threads(thread_names(events)).values()) == ["/host:CPU tf_XLAPjRtCpuClient/123"]
    assert "(60% of the window," in summarize(events)


def test_step_memory_accounts_for_every_byte_live_at_the_peak(tmp_path):
    """bench/step_memory.py on a real compiled step: its groups hold every buffer XLA lists at the peak."""
    from step_memory import peak_buffers, peak_of_dump

    script = Path(__file__).resolve().parents[1] / "bench" / "step_memory.py"
    command = [sys.executable, str(script), "--config", "mel_2bar_small", "--size", "tiny", "--dump", str(tmp_path)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True).stdout
    assert re.search(r"temporaries [\d.]+ GiB \([\d.]+ MB per example\)", out), out
    assert re.search(r"Live at the peak of XLA's schedule: [\d.]+ GiB in \d+ buffers", out), out

    total, rows = peak_of_dump(tmp_path)
    live = next(tmp_path.glob("*train_step*live-range.txt")).read_text()
    assert total == peak_buffers(live)[0] > 0
    assert sum(row[0] for row in rows) == total
    assert not [row for row in rows if row[3] == "?"], "a buffer at the peak had no instruction in the HLO"


def test_compare_trees_runs_each_trees_own_code(tmp_path):
    """bench/compare_trees.sh times this checkout and a copy; a copy made to fail at import fails alone."""
    root = Path(__file__).resolve().parents[1]
    broken = tmp_path / "broken"
    for package in ("musicvae_jax", "configs"):
        shutil.copytree(root / package, broken / package, ignore=shutil.ignore_patterns("__pycache__"))
    init = broken / "musicvae_jax" / "__init__.py"
    init.write_text('raise RuntimeError("the broken tree")\n' + init.read_text())
    runs = {"TREES": f". {broken}", "RUNS": "mel_2bar_small:32:float32:1", "SIZE": "tiny", "RUN_LIMIT": "300"}
    env = dict(os.environ, OUT=str(tmp_path / "out"), **runs)
    out = subprocess.run(
        ["bash", str(root / "bench" / "compare_trees.sh")], env=env, capture_output=True, text=True, timeout=600
    ).stdout
    assert re.search(r"\| mel_2bar_small \| 32 \| float32 \| checkout \| step [\d.]+ s \(median of 1\) \|", out), out
    assert "| mel_2bar_small | 32 | float32 | broken | failed |" in out, out
    assert "the broken tree" in (tmp_path / "out" / "compare.log").read_text()
    assert "mel_2bar_small tiny, batch 32" in (tmp_path / "out" / "profiles.md").read_text()


def _cpuinfo(model: str, flags: str) -> str:
    block = f"processor\t: {{}}\nvendor_id\t: AuthenticAMD\ncpu family\t: {model[0]}\nmodel\t\t: {model[1]}\n"
    block += f"model name\t: AMD EPYC\nflags\t\t: {flags}\n\n"
    return block.format(0) + block.format(1)


def test_the_cpu_name_tells_generations_with_one_model_name_apart():
    assert cpu_name(_cpuinfo(("25", "1"), "fpu sse2 avx avx2 fma")) == "AMD EPYC (family 25, model 1; AVX2)"
    assert cpu_name(_cpuinfo(("25", "17"), "avx2 avx512f avx512_bf16")) == "AMD EPYC (family 25, model 17; AVX-512)"
    assert cpu_name(_cpuinfo(("23", "49"), "sse2")) == "AMD EPYC (family 23, model 49)"
    assert cpu_name("processor\t: 0\nmodel name\t: Neoverse-N1\n") == "Neoverse-N1"  # no family line (ARM)
    assert cpu_name("processor\t: 0\nBogoMIPS\t: 50.00\n") == ""


def test_infill_baseline_scores_fixed_hihat_patterns(tmp_path):
    """bench/infill_baseline.py's precision and recall, against counts made from the file's windows directly."""
    import numpy as np

    from musicvae_jax.convert import convert
    from musicvae_jax.input_pipeline import load_metadata
    from musicvae_jax.midi_io import read_midi, write_midi
    from musicvae_jax.notes import Note, NoteSequence
    from musicvae_jax.representations import get_representation

    hats = [0, 2, 3, 4, 8, 9, 12, 16, 22, 40, 41, 44]  # on quarters, eighths and sixteenths, over three bars
    notes = [Note(pitch=42, velocity=80, start_step=s, end_step=s + 1, is_drum=True, instrument=9) for s in hats]
    notes += [Note(pitch=36, velocity=90, start_step=s, end_step=s + 1, is_drum=True, instrument=9) for s in (0, 24)]
    (tmp_path / "midi").mkdir()
    write_midi(NoteSequence(notes=notes, total_steps=48), tmp_path / "midi" / "beat.mid")
    convert([str(tmp_path / "midi")], tmp_path / "data", "groove_2bar", workers=1)
    (split,) = [name for name, s in load_metadata(tmp_path / "data")["splits"].items() if s["examples"]]
    windows = get_representation("groove_2bar").windows(read_midi(tmp_path / "midi" / "beat.mid"))
    true = np.stack([w["hits"][:, 2] for w in windows])  # closed hi-hat [windows, 32]
    assert true.sum() > 0
    out = subprocess.run(
        [sys.executable, "bench/infill_baseline.py", "--data", str(tmp_path / "data"), "--split", split],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout
    for name, every in (("quarter", 4), ("eighth", 2), ("sixteenth", 1)):
        on = true[:, ::every].sum()
        precision, recall = on / (len(windows) * 32 // every), on / true.sum()
        assert f"| closed_hihat every {name} | {precision:.3f} | {recall:.3f} |" in out, out

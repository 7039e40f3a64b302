"""bench/profile_step.py's trace summary: which threads count as the device, and its busy time as a union."""

import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from profile_step import device_threads, summarize, thread_names  # noqa: E402


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
    assert "Device busy 0.1 ms (50% of the window); events sum to 0.1 ms" in text  # 10-50 and 60-70 of 0-100
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    assert rows[0].startswith("| `gemm` | 2 | 0.04 | 20.0 | 80% |")
    assert rows[1].startswith("| `copy` | 1 | 0.02 | 20.0 | 40% |")


def test_cpu_trace_falls_back_to_the_client_thread():
    events = [
        _meta("process_name", 1, "/host:CPU"),
        _meta("thread_name", 1, "python", tid=10),
        _meta("thread_name", 1, "tf_XLAPjRtCpuClient/123", tid=11),
        _span(1, 10, "PjitFunction(f)", 0, 10),
        _span(1, 11, "dot", 2, 6),
    ]
    assert list(device_threads(thread_names(events)).values()) == ["/host:CPU tf_XLAPjRtCpuClient/123"]
    assert "(60% of the window)" in summarize(events)


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

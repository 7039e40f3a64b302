"""Command-line edges shared by the entry points: flag parsing with clean errors.

ml_collections applies `--config.x=...` overrides while the flag is defined
and parsed; a misspelt key or a bad variant would otherwise end in a long
traceback. Here each ends in one line naming the flag, and exit status 2;
a Ctrl-C that the command leaves unhandled ends in one line, status 130
(a second one at once, should Python have dropped the first: `_ctrl_c`).
Libraries' INFO log lines are dropped (their warnings are kept), so a run's
output is our progress lines. Before main runs on a CPU, host memory is set
up to be reused from step to step and JAX's CPU dispatch is made
synchronous (`host_memory`; `--[no]keep_freed_host_memory` and
`--[no]synchronous_cpu_dispatch` decide where the guess would not).
"""

from __future__ import annotations

import gc
import logging as std_logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from absl import app, flags
from absl import logging as absl_logging

from musicvae_jax import host_memory

_FLAG_ERRORS = (flags.Error, AttributeError, KeyError, TypeError, ValueError, OSError)


def _one_line(error: BaseException) -> str:
    """An error's message on one line (only its last line when it holds a traceback)."""
    while isinstance(error, (KeyError, AttributeError)) and error.args and isinstance(error.args[0], BaseException):
        error = error.args[0]
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    if not lines:
        return type(error).__name__
    return lines[-1] if "Traceback" in str(message) else " ".join(lines)


_PACKAGE = str(Path(__file__).resolve().parent)


def _ours_or_warning(record: std_logging.LogRecord) -> bool:
    """Keeps our INFO lines and every library's warnings; Orbax alone logs ~46 INFO lines per checkpoint."""
    return record.levelno >= std_logging.WARNING or record.pathname.startswith(_PACKAGE)


STOPPED = "stopped by Ctrl-C; what was written before is kept"
_ctrl_c_pressed = []


def _ctrl_c(signum, frame) -> None:
    """Ctrl-C: a KeyboardInterrupt, as Python's own handler raises; a second press stops the process at once.

    Python drops an exception raised while a garbage-collection callback
    runs (JAX has one), printing "Exception ignored in: ..." and going on:
    2 of 40 presses during a sample were lost so. Caught there, the signal is
    raised again 10 ms later, to be handled once the callback has returned.
    """
    if _ctrl_c_pressed:
        sys.stdout.flush()
        print(f"\n{STOPPED}", file=sys.stderr, flush=True)  # below any progress bar
        os._exit(130)
    if _inside_gc_callback(frame):  # the same signal again in a moment, once the callback has returned
        threading.Timer(0.01, signal.raise_signal, (signum,)).start()
        return
    _ctrl_c_pressed.append(signum)
    raise KeyboardInterrupt


def _inside_gc_callback(frame) -> bool:
    """Whether `frame`, or a frame it was called from, runs one of the garbage collector's callbacks."""
    callbacks = {getattr(callback, "__code__", None) for callback in gc.callbacks}
    while frame is not None:
        if frame.f_code in callbacks:
            return True
        frame = frame.f_back
    return False


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def run(
    main: Callable[[list[str]], None],
    define_flags: Callable[[], None],
    config_flag_names: tuple[str, ...] = ("config",),
) -> None:
    """Defines the flags, parses argv and runs main, reporting flag errors in one line."""
    try:
        define_flags()
    except _FLAG_ERRORS as e:
        fail(f"bad --config or --config.* flag: {_one_line(e)}")
    flags.DEFINE_bool(
        "keep_freed_host_memory",
        None,
        "Keep freed host memory for reuse (glibc malloc: no trimming; one arena where CPU dispatch is asynchronous): "
        "CPU steps skip re-mapping their temporaries; resident memory stays at its peak. Default: on where JAX runs "
        "on the CPU alone.",
    )

    flags.DEFINE_bool(
        "synchronous_cpu_dispatch",
        None,
        "Run each CPU computation to its end before the call returns: a step's temporaries are freed before the "
        "next step asks for its own (BENCHMARKS.md). Default: on where JAX runs on the CPU alone.",
    )

    def parse(argv: list[str]) -> list[str]:
        try:
            rest = flags.FLAGS(argv)
            for name in config_flag_names:  # a config file that failed to load raises only when read
                config = flags.FLAGS[name].value
                if config is not None:
                    config.keys()
            return rest
        except _FLAG_ERRORS as e:
            fail(f"{_one_line(e)} (see --helpfull)")

    def set_up_then_main(argv: list[str]) -> None:
        done = host_memory.set_up(  # before JAX starts its threads and its CPU client
            flags.FLAGS.keep_freed_host_memory, flags.FLAGS.synchronous_cpu_dispatch
        )
        if done:
            absl_logging.info("host memory: %s", done)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not a background job's ignored one
            signal.signal(signal.SIGINT, _ctrl_c)
        try:
            main(argv)
        except KeyboardInterrupt:  # a command's own handling comes first (training saves a checkpoint)
            print(STOPPED, file=sys.stderr)
            sys.exit(130)

    absl_logging.get_absl_handler().addFilter(_ours_or_warning)
    app.run(set_up_then_main, flags_parser=parse)

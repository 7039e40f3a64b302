"""host_memory: with glibc set up before JAX starts, a computation's temporaries stop being mapped afresh per call;
with synchronous CPU dispatch, a call returns with its computation done."""

import os
import subprocess
import sys

import pytest

from musicvae_jax import host_memory

# The fewest page faults of ten calls of a jitted function whose 64 MB temporary XLA's CPU client allocates every
# call. (How often glibc finds the freed block again varies from run to run; that it can is what is tested.)
FAULTS_PER_CALL = """
import resource, sys
from musicvae_jax import host_memory
if sys.argv[1] != "default":  # the entry points' set-up, with dispatch synchronous or not
    print(host_memory.set_up(keep=True, synchronous=sys.argv[1] == "synchronous"), file=sys.stderr)
import jax, jax.numpy as jnp
x = jnp.ones((4096, 4096))
f = jax.jit(lambda x: (jnp.sin(x) @ jnp.cos(x[:8]).T).sum())
for _ in range(3):
    f(x).block_until_ready()
counts = []
for _ in range(10):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    f(x).block_until_ready()
    counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(min(counts))
"""


def faults_per_call(mode: str) -> float:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", FAULTS_PER_CALL, mode], capture_output=True, text=True, check=True, env=env
    )
    return float(result.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc settings")
def test_freed_host_memory_is_reused_from_call_to_call():
    default = faults_per_call("default")
    # 64 MB in 4 KB pages is 16,384 faults when the temporary is mapped afresh: every call, by default.
    assert default > 8000, default
    # Synchronous: each thread keeps its arena. Asynchronous: XLA's threads allocate, so one arena for all.
    for dispatch in ("synchronous", "asynchronous"):
        kept = faults_per_call(dispatch)
        assert kept < default / 10, (dispatch, kept, default)


# Whether a computation of ~0.1-0.5 s on the CPU is done when the call that dispatched it returns.
DONE_ON_RETURN = """
import sys
from musicvae_jax import host_memory
if sys.argv[1] == "sync":
    print(host_memory.synchronous_cpu_dispatch(), file=sys.stderr)
import jax, jax.numpy as jnp
x = jnp.ones((1024, 1024)) / 1024
f = jax.jit(lambda x: jax.lax.fori_loop(0, 32, lambda i, y: jnp.tanh(y @ x), x))
f(x).block_until_ready()
print(f(x).is_ready())
"""


def done_on_return(mode: str) -> bool:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-c", DONE_ON_RETURN, mode], capture_output=True, text=True, check=True, env=env
    )
    return result.stdout.strip().splitlines()[-1] == "True"


def test_synchronous_cpu_dispatch_returns_with_the_computation_done():
    assert done_on_return("sync")
    assert not done_on_return("default")  # JAX's default: the call returns while the CPU still computes


def test_cpu_only_follows_jax_platforms_before_installed_plugins(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    assert host_memory.cpu_only()
    for platforms in ("cuda", "tpu,cpu", "cuda, cpu"):
        monkeypatch.setenv("JAX_PLATFORMS", platforms)
        assert not host_memory.cpu_only(), platforms
    monkeypatch.delenv("JAX_PLATFORMS")
    assert host_memory.cpu_only() == (not host_memory.accelerator_plugins())

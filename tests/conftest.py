"""Session set-up: several pytest-xdist workers may share one GPU, so none of them takes most of its memory at
start (JAX's default where a GPU is installed)."""

import os

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import os

import jax
import pytest

# Theory and oracle tests run in float64 (docs/architecture.md, Numerics).
jax.config.update("jax_enable_x64", True)

# Start the backend now: an in-process `cli.main(...)` must never split this process into
# several host devices (it only can before JAX starts), so every test sees the same one device
# whatever ran before it.
jax.devices()


@pytest.fixture(scope="session", autouse=True)
def shared_compilation_cache(tmp_path_factory):
    """One persistent JAX compilation cache for this test session: the test processes and every
    CLI subprocess they start (through the environment) reuse a program compiled once, instead
    of compiling the same tiny scenario again in each test. A cached executable is the same
    executable, so numbers are unchanged; the cache starts empty in every session (pytest's
    temporary folder, shared by the xdist workers), so nothing carries over between CI runs.
    A size limit switches on JAX's file lock, which the concurrent writers need."""
    base = tmp_path_factory.getbasetemp()
    root = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    cache = root / "jax-compilation-cache"
    cache.mkdir(exist_ok=True)
    settings = {
        "JAX_COMPILATION_CACHE_DIR": str(cache),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        "JAX_COMPILATION_CACHE_MAX_SIZE": str(4 << 30),
    }
    os.environ.update(settings)
    jax.config.update("jax_compilation_cache_dir", str(cache))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_compilation_cache_max_size", 4 << 30)
    yield cache

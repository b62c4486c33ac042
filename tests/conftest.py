import jax

# Theory and oracle tests run in float64 (docs/design.md, Numerics).
jax.config.update("jax_enable_x64", True)

# Start the backend now: an in-process `cli.main(...)` must never split this process into
# several host devices (it only can before JAX starts), so every test sees the same one device
# whatever ran before it.
jax.devices()

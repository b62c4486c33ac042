import jax

# Theory and oracle tests run in float64 (docs/design.md, Numerics).
jax.config.update("jax_enable_x64", True)

"""Data-parallel training on each framework's own distributed engine.

launch.py (the parent, which imports no framework) starts one process per rank with the environment each
engine's own launcher would give it (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT); rank.py runs
one rank through the framework's parallel module (the registry's ``parallel`` entry). Every rank starts from
the same canonical weights and reads its slice of the same pre-drawn global batches, so R ranks and one
process see exactly the same images per step.
"""

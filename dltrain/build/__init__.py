"""Config -> the objects of a run: one module per part, and the recipe (run.build_run)."""

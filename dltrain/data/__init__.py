"""Dataset builders, one source per module, registered in DATASETS when their module is imported.

Nothing is imported here: DATASETS imports a dataset's module when the dataset is first asked for
(dltrain.registry_index names it), so a run imports only the libraries its own data needs.
"""

"""Dataset builders; every module here registers its datasets in DATASETS on import."""

from dltrain.autoimport import import_submodules

import_submodules(__name__, __path__)

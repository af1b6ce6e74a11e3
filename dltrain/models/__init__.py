"""Model builders; every module here registers its models in MODELS on import."""

from dltrain.autoimport import import_submodules

import_submodules(__name__, __path__)

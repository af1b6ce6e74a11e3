"""Model builders, one family per module, registered in MODELS when their module is imported.

Nothing is imported here: MODELS imports a model's module when the model is first asked for
(dltrain.registry_index names it), so a run imports torchvision only for a torchvision model.
"""

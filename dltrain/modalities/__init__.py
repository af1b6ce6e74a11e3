"""Modalities: each kind of model input (image, sequence, text, table, features) in one module.

A modality owns its inputs: how new inputs are read for prediction, how a rebuilt dataset is made
to match a run's saved preprocessing, the example batch an export traces, and whether samples
can be drawn as pictures. `lookup` names them all and decides, once per run, which one a
dataset's meta describes; everything else asks the modality (`lookup.modality_of`).
"""

"""``python -m coco2yolo.kfold EXPERIMENT.yaml``: the k-fold workflow in one reproducible command.

Convert the K folds -> train every (model, fold) -> predict each fold's own validation images (out of
fold) and the test images -> merge each model's out-of-fold files -> score every model on the whole
cleaned training set -> tune the fusion cross-fitted (chosen on K-1 folds, measured on the held-out
one) -> fuse each model's K test files, then the models with the setting searched on all folds ->
submission. Modules: experiment (the file), plan (the jobs), runner (stamps, claims, devices, shards),
steps (the experiment's own steps).
"""

"""The fusion stage: box-fusion kernels with ensemble-boxes semantics (kernels), ensemble.py (ensemble)."""

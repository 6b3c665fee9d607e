"""The training stage: train_yolo.py (train), its configuration (config), old yolov5 checkpoints (legacy), pseudo-labels (pseudo)."""

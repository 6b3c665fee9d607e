"""The dataset stage: COCO -> YOLO conversion (convert), label cleaning (clean), stratified grouped folds (split)."""

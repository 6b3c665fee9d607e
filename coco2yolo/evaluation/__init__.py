"""The scoring stage: COCO mAP with bootstrap intervals (metrics), charts (plots)."""

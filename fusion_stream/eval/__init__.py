"""Scoring detections against ground truth (nuScenes-style metrics) and the reports built on it."""

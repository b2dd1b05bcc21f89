"""Analysis of learned tokens: dense probes and FLSL visualisations."""
from .dense_probe import (bbox_grid_positions, bbox_knn_top1, confusion_matrix,
                          hungarian_cluster_miou, knn_segmentation, labels_to_patches,
                          linear_probe, miou_and_acc)
from .tokens import extract_tokens, load_backbone

__all__ = [
    'labels_to_patches', 'knn_segmentation', 'linear_probe', 'hungarian_cluster_miou',
    'bbox_grid_positions', 'bbox_knn_top1', 'confusion_matrix', 'miou_and_acc',
    'extract_tokens', 'load_backbone'
]

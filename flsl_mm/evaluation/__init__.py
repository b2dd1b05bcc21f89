from .uavdt_metric import UAVDTMetric, average_precision, evaluate_detections

__all__ = ['UAVDTMetric', 'average_precision', 'evaluate_detections']

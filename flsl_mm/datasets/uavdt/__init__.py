from .coco import to_coco
from .demo import ensure_uavdt_demo, make_uavdt_demo
from .format import (CLASSES, OFFICIAL_TEST_SEQUENCES, UAVDTFormatError,
                     discover_sequences, load_index, parse_annotation_file,
                     select_sequences)
from .uavdt_dataset import UAVDTDataset, UAVDTDemoDataset

__all__ = [
    'CLASSES', 'OFFICIAL_TEST_SEQUENCES', 'UAVDTFormatError', 'UAVDTDataset',
    'discover_sequences', 'load_index', 'parse_annotation_file', 'select_sequences',
    'make_uavdt_demo', 'ensure_uavdt_demo', 'to_coco', 'UAVDTDemoDataset'
]

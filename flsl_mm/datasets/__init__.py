from .checked_coco import CheckedCocoDataset
from .collate import flsl_collate, pack_images_collate, query_index
from .demo_data import ensure_demo_data, make_demo_data
from .demo_dataset import DemoCocoDataset, DemoImageDataset
from .demo_seg_dataset import DemoSegDataset
from .sample_seeding import SampleSeededDataset, SeededSampler
from .transforms.check_seg_map import CheckSegMapSize
from .transforms.dino_multicrop import DINOMultiCrop
from .transforms.flsl_multiview import FLSLMultiView
from .transforms.loading import LoadImageLikeImageFolder
from .transforms.query_mask import query_mask
from .uavdt import UAVDTDataset, make_uavdt_demo

__all__ = [
    'FLSLMultiView', 'DINOMultiCrop', 'query_mask', 'make_demo_data', 'ensure_demo_data',
    'DemoImageDataset', 'DemoCocoDataset', 'CheckedCocoDataset', 'DemoSegDataset', 'UAVDTDataset', 'make_uavdt_demo',
    'SampleSeededDataset', 'SeededSampler', 'CheckSegMapSize', 'LoadImageLikeImageFolder',
    'pack_images_collate', 'flsl_collate', 'query_index'
]

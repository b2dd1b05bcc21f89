from .algorithms.dino import DINO
from .algorithms.flsl import FLSL
from .algorithms.student_teacher import StudentTeacher
from .algorithms.teacher_ema import TeacherEMA
from .backbones.flsl_vit import FLSLViT
from .data_preprocessors import DeviceViewPreprocessor, MultiViewDataPreprocessor
from .heads.flsl_head import FLSLHead
from .necks.vit_fpn_adapter import ViTFPNAdapter
from .losses.dino_loss import DINOLoss
from .losses.flsl_loss import FLSLLoss, kmeans_loss, meanshift_loss, vmr_loss
from .utils.mean_shift import mean_shift
from .utils.pos_embed import get_2d_sincos_pos_embed, resize_pos_embed

__all__ = [
    'FLSL', 'DINO', 'StudentTeacher', 'DINOLoss', 'TeacherEMA', 'FLSLViT', 'FLSLHead', 'FLSLLoss', 'mean_shift',
    'get_2d_sincos_pos_embed', 'resize_pos_embed', 'meanshift_loss', 'kmeans_loss',
    'vmr_loss', 'ViTFPNAdapter', 'DeviceViewPreprocessor', 'MultiViewDataPreprocessor'
]

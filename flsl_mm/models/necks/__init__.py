from .vit_fpn_adapter import ViTFPNAdapter

__all__ = ['ViTFPNAdapter']

from .device_views import DeviceViewPreprocessor
from .multi_view import MultiViewDataPreprocessor

__all__ = ['DeviceViewPreprocessor', 'MultiViewDataPreprocessor']

from .device_views import DeviceViewPreprocessor

__all__ = ['DeviceViewPreprocessor']

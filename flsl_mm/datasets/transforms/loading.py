"""Decode a training image the way the FLSL and DINO reference loaders do."""
from __future__ import annotations

import io
import os

import numpy as np
import torch
from mmcv.transforms import BaseTransform
from mmengine import fileio
from PIL import Image
from torchvision.io import ImageReadMode, decode_jpeg

from flsl_mm.registry import TRANSFORMS

# start-of-frame markers (baseline, extended, progressive, lossless; not DHT
# 0xC4, JPG 0xC8, DAC 0xCC)
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def jpeg_components(data: bytes) -> int | None:
    """The number of colour components of a JPEG's frame (1 gray, 3 YCbCr / RGB,
    4 CMYK / YCCK), or None when ``data`` is not a JPEG this can parse."""
    if data[:2] != b'\xff\xd8':
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
            continue
        if marker in _SOF:
            return data[i + 9] if i + 9 < n else None
        i += 2 + int.from_bytes(data[i + 2:i + 4], 'big')
    return None


@TRANSFORMS.register_module()
class LoadImageLikeImageFolder(BaseTransform):
    """Load ``results['img_path']`` as torchvision's ``ImageFolder`` does (the
    reference pretraining loaders of FLSL and DINO): ``PIL.Image.open`` then
    ``.convert('RGB')``.

    Unlike mmcv's ``LoadImageFromFile`` (OpenCV), the EXIF orientation tag is
    ignored (such an image is used as stored, not rotated) and CMYK, grayscale,
    palette and LA images are converted PIL's way (docs/pretraining.md, "Views").
    Gray and colour JPEGs are decoded by torchvision's ``decode_jpeg`` (the same
    libjpeg-turbo decoding as PIL's, bitwise equal: tested; 25 % faster), every
    other file by PIL.

    Output ``results['img']``: mmcv's BGR uint8 ``HxWx3`` array, or with
    ``to_tensor=True`` an RGB uint8 ``3xHxW`` tensor (what the device view path
    sends; for JPEGs a view of the decoded ``HxWx3`` buffer, no copy);
    ``img_shape`` and ``ori_shape`` (H, W).

    Args:
        to_tensor: output the RGB ``3xHxW`` tensor.
        backend_args: mmengine file backend arguments (e.g. for Petrel / S3).

    Raises:
        ValueError: naming the file, when it is missing or cannot be decoded.
    """

    def __init__(self, to_tensor: bool = False, backend_args: dict | None = None) -> None:
        self.to_tensor = to_tensor
        self.backend_args = backend_args

    def transform(self, results: dict) -> dict:
        path = results['img_path']
        try:
            data = self._read(path)
        except FileNotFoundError as e:
            raise ValueError(f'{path}: image file not found') from e
        chw = None
        if jpeg_components(data) in (1, 3):
            try:
                chw = decode_jpeg(torch.frombuffer(data, dtype=torch.uint8),
                                  mode=ImageReadMode.RGB)
            except RuntimeError:
                chw = None  # PIL decodes it or names the problem
        if chw is None:
            try:
                with Image.open(io.BytesIO(data)) as img:
                    rgb = np.asarray(img.convert('RGB'))
            except (OSError, ValueError, Image.DecompressionBombError) as e:
                raise ValueError(f'{path}: cannot decode the image ({e})') from e
            if self.to_tensor:
                chw = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))
        if self.to_tensor:
            results['img'] = chw
        elif chw is not None:
            results['img'] = np.ascontiguousarray(chw.flip(0).permute(1, 2, 0).numpy())
        else:
            results['img'] = np.ascontiguousarray(rgb[..., ::-1])
        shape = tuple(chw.shape[1:]) if chw is not None else rgb.shape[:2]
        results['img_shape'] = shape
        results['ori_shape'] = shape
        return results

    def _read(self, path: str) -> bytearray:
        """The file's bytes (writable, for ``torch.frombuffer``); local files
        without mmengine's backend dispatch (50 us an image)."""
        if self.backend_args is None and '://' not in str(path):
            with open(path, 'rb') as f:
                data = bytearray(os.fstat(f.fileno()).st_size)
                if f.readinto(data) != len(data):
                    raise ValueError(f'{path}: the file changed while being read')
                return data
        return bytearray(fileio.get(path, backend_args=self.backend_args))

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(to_tensor={self.to_tensor}, '
                f'backend_args={self.backend_args})')
